"""Site-wide slots for expensive requests: at most N of a kind at once across every web process, so they never
hold every web worker and database backend while logins and reviews wait. PostgreSQL advisory locks (a first key
per kind, the slot as the second); elsewhere (SQLite: one machine, the demo) every request gets a slot.
"""

from django.db import connection

SEARCH, EXPORT = 0x5EA2C4, 0x5EA2C5  # the kinds' first keys


def take(kind: int, count: int, session: bool = False) -> int | None:
    """A free slot of `kind` (0..count-1), held until the transaction ends (until `release` with `session`);
    None when all are taken."""
    if connection.vendor != "postgresql":
        return 0
    function = "pg_try_advisory_lock" if session else "pg_try_advisory_xact_lock"
    with connection.cursor() as cursor:
        for slot in range(count):
            cursor.execute(f"SELECT {function}(%s, %s)", [kind, slot])
            if cursor.fetchone()[0]:
                return slot
    return None


def release(kind: int, slot: int) -> None:
    """Give back a slot taken with `session`."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [kind, slot])


class HeldWhileStreaming:
    """A response's chunks with a session slot held until the response is closed, sent whole or not (Django closes
    a streaming response's iterator when the response is closed, even one never started)."""

    def __init__(self, chunks, kind: int, slot: int):
        self.chunks, self.kind, self.slot = iter(chunks), kind, slot

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return next(self.chunks)

    def close(self) -> None:
        if self.slot is not None:
            release(self.kind, self.slot)
            self.slot = None
        getattr(self.chunks, "close", lambda: None)()
