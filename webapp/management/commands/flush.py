"""Django's `flush` (empty every table), which also empties the append-only audit trail and reviews on SQLite.

Their triggers refuse to delete a row; flushing the whole database is the one deletion meant to pass.
On PostgreSQL flush truncates, which fires no row trigger; SQLite deletes row by row, so there the triggers
are lifted while it runs and put back after. Django's test cases run this command between transactional tests.
"""

from importlib import import_module

from django.core.management.commands import flush
from django.db import connections

# The append-only triggers: the audit trail's (0014) and the reviews' with both tables' no-replace (0024).
GUARDS = [import_module(f"webapp.migrations.{name}") for name in ("0014_audit_event", "0024_trail_guards")]


class Command(flush.Command):
    def handle(self, **options):
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            return super().handle(**options)
        with connection.cursor() as cursor:
            for sql in (sql for guard in GUARDS for sql in guard.SQLITE_DROP):
                cursor.execute(sql)
        try:
            return super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                for sql in (sql for guard in GUARDS for sql in guard.SQLITE):
                    cursor.execute(sql)
