"""How long each free-text field may be, in one place: the models declare them (`max_length`), and the
importers, forms and review endpoint refuse longer text with a message naming the field and its limit.

Short names (models, sources, workers) have had `max_length` on their `CharField`s from the start; these are
the limits of the long texts. docs/ARCHITECTURE.md lists them all.
"""

QUESTION = 4_000  # an instruction's question
ANSWER = 50_000  # a policy answer (generated or imported); a claim and its question are parts of one
NOTE = 2_000  # a reviewer's note on a decision
ERROR = 10_000  # why a job or an iteration failed, or a division (written by the app: longer text is cut)
SETTINGS = 10_000  # an iteration's other settings, as JSON text in the iteration form


def too_long(what: str, text: str, limit: int) -> str | None:
    """The error for text over its limit, or None when it fits."""
    if len(text) <= limit:
        return None
    return f"{what} is {len(text)} characters long, over the limit of {limit}"
