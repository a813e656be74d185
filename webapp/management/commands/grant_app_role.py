"""Give the app's PostgreSQL role what the site needs and no more; run by the tables' owner after every migrate.

The web app and the workers connect as a role that owns nothing. It reads and writes rows, but cannot TRUNCATE a
table (no such grant), ALTER or DROP it, or disable its triggers (those need ownership), nor create tables; on
the audit trail and the reviews it may only read and append (their triggers refuse updates and deletes to
everyone too). Migrations run as the owner (compose's `migrate` service). Idempotent: grants are revoked and
given afresh, so tables a new migration adds get theirs on the next run.
"""

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

from webapp.models import AuditEvent, Review

APPEND_ONLY = [AuditEvent._meta.db_table, Review._meta.db_table]
SCHEMA = "public"


class Command(BaseCommand):
    help = (
        "Grant ROLE (the app's PostgreSQL role) rows but no ownership: no TRUNCATE, ALTER, DROP or trigger "
        "changes, and only SELECT and INSERT on the audit trail and reviews. Run as the owner after migrate."
    )

    def add_arguments(self, parser):
        parser.add_argument("role", help="the role DATABASE_URL names for the web app and the workers")
        parser.add_argument(
            "--password-env",
            metavar="VARIABLE",
            help="create the role if it is missing, with the password in this environment variable",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, role, password_env, database, **options):
        connection = connections[database]
        if connection.vendor != "postgresql":
            raise CommandError(f"grant_app_role is for PostgreSQL; this database is {connection.vendor}")
        with connection.cursor() as cursor:
            self.ensure_role(cursor, role, password_env)
            self.refuse_a_powerful_role(cursor, role)
            name = sql.Identifier(role)
            tables = sql.SQL(", ").join(sql.Identifier(SCHEMA, table) for table in APPEND_ONLY)
            statements = [
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(connection.settings_dict["NAME"]), name
                ),
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), name),
                # PostgreSQL before 15 lets every role create tables in public.
                sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC, {}").format(sql.Identifier(SCHEMA), name),
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sql.Identifier(SCHEMA), name),
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                    sql.Identifier(SCHEMA), name
                ),
                sql.SQL("REVOKE UPDATE, DELETE ON {} FROM {}").format(tables, name),
                sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(sql.Identifier(SCHEMA), name),
                sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), name),
            ]
            for statement in statements:
                cursor.execute(statement)
        self.stdout.write(
            f"{role}: rows of every table in {SCHEMA} (only SELECT and INSERT on {', '.join(APPEND_ONLY)}); "
            "no TRUNCATE, no ownership"
        )

    def ensure_role(self, cursor, role: str, password_env: str | None) -> None:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone():
            return
        if not password_env:
            raise CommandError(f"there is no role {role!r}: create it, or give --password-env VARIABLE")
        password = os.environ.get(password_env)
        if not password:
            raise CommandError(f"{password_env} is empty: the new role {role!r} needs a password")
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))

    def refuse_a_powerful_role(self, cursor, role: str) -> None:
        """The app's role must not be the owner, a superuser or able to bypass row security: it would undo this."""
        cursor.execute("SELECT rolsuper OR rolbypassrls OR rolcreaterole FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone()[0]:
            raise CommandError(f"{role!r} is a superuser or may create roles or bypass row security: use a plain role")
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tableowner = %s", [SCHEMA, role])
        owned = [name for (name,) in cursor.fetchall()]
        if owned:
            raise CommandError(
                f"{role!r} owns {len(owned)} tables (e.g. {owned[0]}); an owner may truncate them and disable their "
                "triggers. Migrate as another role (the owner) and connect the app as this one."
            )
