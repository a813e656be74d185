"""The pair list's search, bounded so that no query can take the site down.

A search is words to find and words to leave out (`-word`); quoted phrases count as their words. Every search
needs a word to find, at most MAX_TERMS terms in all: a search of only `-words` would read every answer, and
so would a phrase, whose word order only the answers' text can confirm. On PostgreSQL each part is one lookup
in a GIN index (migration pair_search_indexes) that answers without reading the answers back: the words to find
together, the words to leave out as a set taken away. Elsewhere, each word is a substring, unindexed.

Around the index, three bounds more: the list's queries run under a statement timeout on PostgreSQL
(SEARCH_TIMEOUT_MS: a search past it is stopped and said to be); at most SEARCH_CONCURRENCY searches run at
once across the site (PostgreSQL advisory locks, held for the search's transaction), so searches never hold
every web worker and database backend while logins wait: one more is refused at once; and each user has
SEARCH_RATE searches a minute (a shared cache's count; one process's own without one).
"""

import re
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.cache import cache
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from webapp import slots
from webapp.models import Instruction, Iteration, Response

SEARCH_CONFIG = "english"  # the text search configuration of the search indexes (migration pair_search_indexes)
MAX_TERMS = 8
_TERM = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')
_WORD = re.compile(r"\w+")


class SearchRefused(ValueError):
    """A search the list will not run; the message says why and what to do instead."""


@dataclass(frozen=True)
class Terms:
    find: tuple[str, ...]
    leave_out: tuple[str, ...]


def parse(text: str) -> Terms:
    """The words to find and to leave out; SearchRefused when there is nothing to find or too much to look for."""
    find, leave_out = [], []
    for match in _TERM.finditer(text):
        negated, phrase = (match[1], match[2]) if match[2] is not None else (match[3], match[4])
        words = [w.lower() for w in _WORD.findall(phrase)]
        (leave_out if negated else find).extend(words)
    find, leave_out = list(dict.fromkeys(find)), list(dict.fromkeys(leave_out))
    if not find:
        raise SearchRefused("Say what to look for: a search of only -words would read every answer.")
    if len(find) + len(leave_out) > MAX_TERMS:
        raise SearchRefused(f"Use at most {MAX_TERMS} words: this search has {len(find) + len(leave_out)}.")
    return Terms(tuple(find), tuple(leave_out))


def _indexed(model, field: str, words, every: bool):
    """The rows whose `field` holds every (or any) of `words`, by one GIN index lookup."""
    raw = (" & " if every else " | ").join(words)  # \w+ words only: nothing of tsquery's syntax gets in
    query = SearchQuery(raw, config=SEARCH_CONFIG, search_type="raw")
    return model.objects.annotate(words=SearchVector(field, config=SEARCH_CONFIG)).filter(words=query)


def search_pairs(pairs, iteration: Iteration, text: str):
    """The pairs whose question or either answer holds every word to find and none to leave out (each checked in
    one text: the question, or one answer)."""
    terms = parse(text)
    answers = Response.objects.filter(iteration=iteration)
    if connections[pairs.db].vendor == "postgresql":
        questions = _indexed(Instruction, "question", terms.find, every=True)
        answers = answers.filter(pk__in=_indexed(Response, "text", terms.find, every=True).values("pk"))
        if terms.leave_out:
            questions = questions.exclude(pk__in=_indexed(Instruction, "question", terms.leave_out, every=False))
            answers = answers.exclude(pk__in=_indexed(Response, "text", terms.leave_out, every=False).values("pk"))
    else:
        questions = Instruction.objects.filter(*[Q(question__icontains=w) for w in terms.find])
        answers = answers.filter(*[Q(text__icontains=w) for w in terms.find])
        for word in terms.leave_out:
            questions, answers = questions.exclude(question__icontains=word), answers.exclude(text__icontains=word)
    return pairs.filter(Q(instruction__in=questions) | Q(chosen__in=answers) | Q(rejected__in=answers))


class TooManySearches(SearchRefused):
    """Past SEARCH_RATE searches this minute."""


def take_turn(user) -> None:
    """Count a search of `user`; TooManySearches past SEARCH_RATE a minute."""
    key = f"pair-search:{user.pk}:{timezone.now():%Y%m%d%H%M}"
    cache.add(key, 0, timeout=120)
    if cache.incr(key) > settings.SEARCH_RATE:
        raise TooManySearches(f"Too many searches: at most {settings.SEARCH_RATE} a minute. Wait a moment.")


class SearchTimedOut(Exception):
    """The search ran past SEARCH_TIMEOUT_MS and PostgreSQL stopped it."""


class SearchBusy(TooManySearches):
    """SEARCH_CONCURRENCY searches are running already."""


@contextmanager
def bounded(search: bool):
    """Run the list's queries under SEARCH_TIMEOUT_MS on PostgreSQL, in their own transaction, and a search in one
    of the SEARCH_CONCURRENCY slots; SearchTimedOut when a query runs past the time, SearchBusy when no slot is
    free."""
    if connection.vendor != "postgresql":
        yield
        return
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{settings.SEARCH_TIMEOUT_MS}ms"])
            if search and slots.take(slots.SEARCH, settings.SEARCH_CONCURRENCY) is None:
                raise SearchBusy("Other searches are running: search again in a moment.")
            yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == "57014":  # query_canceled
            raise SearchTimedOut from None
        raise
