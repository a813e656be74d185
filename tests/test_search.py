"""The pair list's search: words to find and to leave out, refused where it would read every answer, bounded by
a statement timeout and a rate (webapp/review/search.py). Found by an attack: `-shape` or `"shape shape"` over
80k answers took 34–46 s a request, and 12 at once made the site unreachable."""

import pytest
from django.db import connection
from django.urls import reverse

from tests.review_data import reviewing_iteration
from webapp import slots
from webapp.models import PreferencePair
from webapp.review.search import SearchBusy, SearchRefused, SearchTimedOut, Terms, bounded, parse, search_pairs

pytestmark = pytest.mark.django_db


def test_a_search_is_words_to_find_and_words_to_leave_out():
    assert parse('red "blue  Sofa" -cat -"green lamp"') == Terms(("red", "blue", "sofa"), ("cat", "green", "lamp"))
    assert parse("Café naïve café") == Terms(("café", "naïve"), ())
    assert parse("a & b | !c <-> d:*") == Terms(("a", "b", "c", "d"), ())  # no tsquery syntax gets through


@pytest.mark.parametrize(
    "text, message",
    [("-shape", "Say what to look for"), ('-"shape shape" -x', "Say what to look for"), ("!!! ???", "Say what"),
     (" ".join(f"w{n}" for n in range(9)), "at most 8 words")],
)  # fmt: skip
def test_a_search_that_would_read_every_answer_is_refused(text, message):
    with pytest.raises(SearchRefused, match=message):
        parse(text)


def test_the_search_finds_every_word_in_one_text_and_leaves_words_out():
    texts = {0: "The cat sits on the red sofa.", 1: "A dog lies on the blue carpet.", 2: "The cat and the dog play."}
    iteration = reviewing_iteration([[0.9], [0.2], [0.5]], texts=texts)
    pairs = PreferencePair.objects.filter(iteration=iteration)

    def found(text):
        matched = search_pairs(pairs, iteration, text)
        return {(p.chosen.seed, p.rejected.seed) for p in matched.select_related("chosen", "rejected")}

    every = {(p.chosen.seed, p.rejected.seed) for p in pairs.select_related("chosen", "rejected")}
    assert found("cat") == {pair for pair in every if 0 in pair or 2 in pair}
    assert found("cat -dog") == {pair for pair in every if 0 in pair}
    assert found('"sofa red"') == found("red sofa") == {pair for pair in every if 0 in pair}  # a phrase's words
    assert found("cat carpet") == set()  # both words in one text, not across the pair


def test_the_pair_list_says_why_it_refused_a_search_and_counts_searches(client, alice, settings):
    iteration = reviewing_iteration([[0.9], [0.2]])
    client.force_login(alice)
    url = reverse("review-pairs")
    response = client.get(url, {"iteration": iteration.number, "q": "-answer"})
    assert response.status_code == 400 and "Say what to look for" in response.content.decode()
    settings.SEARCH_RATE = 3
    assert client.get(url, {"iteration": iteration.number, "q": "answer"}).status_code == 200
    assert client.get(url, {"iteration": iteration.number, "q": "sofa"}).status_code == 200
    refused = client.get(url, {"iteration": iteration.number, "q": "cat"})  # the fourth this minute
    assert refused.status_code == 429 and "at most 3 a minute" in refused.content.decode()
    assert client.get(url, {"iteration": iteration.number}).status_code == 200  # browsing is not searching


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a statement timeout: PostgreSQL")
def test_a_search_past_its_time_is_stopped(settings):
    settings.SEARCH_TIMEOUT_MS = 50
    with pytest.raises(SearchTimedOut), bounded(search=True), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")
    with connection.cursor() as cursor:  # the connection is usable afterwards, without the timeout
        cursor.execute("SELECT pg_sleep(0.1), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == "0"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL")
def test_searches_past_the_sites_concurrency_are_refused_at_once(settings, transactional_db):
    """While SEARCH_CONCURRENCY searches run, one more is refused without waiting; browsing the list is not."""
    import psycopg

    settings.SEARCH_CONCURRENCY = 1
    other = psycopg.connect(**connection.get_connection_params())
    with other.transaction():
        taken = other.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [slots.SEARCH]).fetchone()[0]
        assert taken  # another worker's search holds the slot
        with pytest.raises(SearchBusy, match="Other searches are running"), bounded(search=True):
            pass
        with bounded(search=False):
            pass
    other.close()
    with bounded(search=True):  # free again
        pass


def test_a_search_over_the_rate_is_refused_before_the_page_is_built(
    client, alice, settings, django_assert_max_num_queries
):
    """Under a flood of searches each refusal built the whole list page (four login pages' work), and the site
    slowed for everyone: now the rate is checked first and the answer is the notice with a way back."""
    iteration = reviewing_iteration([[0.9], [0.2]])
    client.force_login(alice)
    settings.SEARCH_RATE = 1
    url = reverse("review-pairs")
    assert client.get(url, {"iteration": iteration.number, "q": "answer"}).status_code == 200
    with django_assert_max_num_queries(3):  # the session and its user: no iteration, source or pair query
        refused = client.get(url, {"iteration": iteration.number, "q": "cat"})
    assert refused.status_code == 429 and "at most 1 a minute" in refused.content.decode()
    assert f'href="{url}?iteration={iteration.number}"' in refused.content.decode()
