"""Numbers from a URL or a query string that name rows: only those the database's integer columns can hold.

Past a column's range SQLite raises OverflowError (a 500) and PostgreSQL compares the column as numeric, which
skips its index. Such a number names no row, so it is refused before any query is made with it.
"""

from django.db import connection
from django.db.models import Field


def fits(field: Field, value: int) -> bool:
    """Whether the database can store `value` in `field`'s column."""
    low, high = connection.ops.integer_field_range(field.get_internal_type())
    return (low is None or low <= value) and (high is None or value <= high)


def parse_id(text: str) -> int | None:
    """`text` as an id, or None unless it is ASCII digits naming a number a primary key can be ("²".isdigit()
    is true, but int("²") fails)."""
    if not (text.isascii() and text.isdigit()):
        return None
    try:
        return IdConverter().to_python(text)
    except ValueError:
        return None


class IdConverter:
    """`<id:name>` in a URL: a number a primary key can be; another number is a 404, as a missing row is."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)  # a ValueError (over 4300 digits too) is a 404
        low, high = connection.ops.integer_field_range("BigAutoField")
        if not low <= number <= high:
            raise ValueError(f"{value} is past the database's range of ids")
        return number

    def to_url(self, value) -> str:
        return str(value)
