"""Review pages: the pair list, the pair page and the spot-check queue; every decision appends a Review.

Reviewers (the `reviewer` group) and staff only. Objects are looked up through the iteration in the URL, so
an id from another iteration (or a claim of another answer) is a 404. A pair page is addressed by its two
answers rather than by the pair row: a review can flip the pair or turn it into a tie, which rebuilds the
instruction's pairs, and the page must still load afterwards to say so. Undo (a button named "undo" whose
value is the review) takes back one of the reviewer's own decisions on the page by appending an undo.
"""

from django import forms
from django.conf import settings
from django.db.models import Q
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from webapp import limits
from webapp.accounts.permissions import reviewer_required
from webapp.ids import fits, parse_id
from webapp.models import CLAIM_DECISIONS, AuditSample, Claim, Iteration, PreferencePair, Review
from webapp.review import selectors
from webapp.review.search import SearchRefused, SearchTimedOut, TooManySearches, bounded, take_turn
from webapp.review.service import CannotUndo, Decided, ReviewClosed, decide, set_excluded, take_back

YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]


class PairFilter(forms.Form):
    iteration = forms.IntegerField(required=False, min_value=1)
    reviewed = forms.ChoiceField(choices=YES_NO, required=False)
    excluded = forms.ChoiceField(choices=YES_NO, required=False)
    min_gap = forms.IntegerField(required=False, min_value=1, label="Score gap from")
    max_gap = forms.IntegerField(required=False, min_value=1, label="Score gap to")
    source = forms.CharField(required=False, max_length=100, widget=forms.Select)  # a gone source matches nothing
    q = forms.CharField(required=False, max_length=200, label="Search", help_text="words of the question or answers")
    sort = forms.ChoiceField(
        choices=[("-gap", "largest gap first"), ("gap", "smallest gap first"), ("-id", "newest"), ("id", "oldest")],
        required=False,
    )
    after = forms.RegexField(
        r"^[0-9]{1,20}\.[0-9]{1,20}$", required=False, error_messages={"invalid": "not a cursor of this list (gap.id)"}
    )

    def clean_after(self) -> str:
        """The cursor (score gap, id) of the last pair shown, refused past the columns' range: a query with it
        would fail on SQLite and skip the pair index on PostgreSQL."""
        after = self.cleaned_data["after"]
        if after:
            gap, pk = after.split(".")
            if not (fits(PreferencePair._meta.get_field("score_gap"), int(gap)) and parse_id(pk) is not None):
                raise forms.ValidationError("not a cursor of this list: past the database's range")
        return after

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].widget.choices = [("", "any")] + [(s, s) for s in selectors.instruction_sources()]


@reviewer_required
def pair_list(request):
    if (request.GET.get("q") or "").strip():
        try:
            take_turn(request.user)
        except TooManySearches as refused:
            # Before the page is built: a reviewer's searches past the rate cost the site little (a full page
            # per refusal cost four login pages' work, and slowed everyone's pages under a flood of them).
            return search_refused(request, str(refused))
    form = PairFilter(request.GET)
    if "after" in form.errors:  # only a link makes a cursor: a bad one is a bad request, not a filter to drop
        return HttpResponseBadRequest(f"after: {form.errors['after'][0]}", content_type="text/plain")
    valid = form.is_valid()
    filters = form.cleaned_data if valid else dict.fromkeys(PairFilter.base_fields)
    choice = selectors.iteration_choice(filters["iteration"])
    context = {"form": form, "iterations": choice.iterations, "iteration": choice.shown, "page": None, "notice": ""}
    status = 200
    if not valid:  # a filter that cannot be read is said, not silently dropped (min_gap=abc listed every pair)
        errors = [f"{form.fields[name].label or name.replace('_', ' ')}: {' '.join(messages)}"
                  for name, messages in form.errors.items()]  # fmt: skip
        context["notice"], status = "Filter not applied. " + "; ".join(errors), 400
    elif choice.shown:
        try:
            searching = bool((filters.get("q") or "").strip())
            with bounded(searching):
                context["page"] = selectors.pair_page(choice.shown, filters, request.GET)
        except SearchRefused as refused:
            context["notice"], status = str(refused), 429 if isinstance(refused, TooManySearches) else 400
        except SearchTimedOut:
            seconds = settings.SEARCH_TIMEOUT_MS / 1000
            context["notice"] = (
                f"The search took longer than {seconds:g} s and was stopped: look for rarer words, or fewer."
            )
            status = 503
    template = "review/pair_list.html#results" if request.htmx else "review/pair_list.html"
    return render(request, template, context, status=status)


def search_refused(request, notice: str) -> HttpResponse:
    """A search over the rate: its notice alone (the list's results fragment, or a small page linking back)."""
    template = "review/search_refused.html#results" if request.htmx else "review/search_refused.html"
    query = request.GET.copy()
    query.pop("q", None)
    query.pop("after", None)
    back = f"{reverse('review-pairs')}?{query.urlencode()}" if query else reverse("review-pairs")
    return render(request, template, {"notice": notice, "back": back}, status=429)


def _posted_decision(request) -> tuple[str, int] | None:
    """The named submit button pressed: its name is the decision, its value the claim."""
    for decision in CLAIM_DECISIONS:
        if (claim_id := parse_id(request.POST.get(decision, ""))) is not None:
            return decision, claim_id
    return None


def record_posted(request, claims, audit_sample: AuditSample | None = None) -> Decided | HttpResponse:
    """Record the decision, or the undo, posted on one of `claims`: the new review (and its rebuild), or an error
    response.
    `audit_sample`: the audit sample whose page it was posted on."""
    try:
        if (undone := parse_id(request.POST.get("undo", ""))) is not None:
            reviews = Review.objects.filter(claim__in=claims, reviewer=request.user).select_related("claim__response")
            return take_back(get_object_or_404(reviews, pk=undone), request.user)
        if posted := _posted_decision(request):
            decision, claim_id = posted
            claim = get_object_or_404(claims.select_related("response"), pk=claim_id)
            note = request.POST.get("note", "")
            if error := limits.too_long("The note", note, limits.NOTE):
                return HttpResponseBadRequest(f"{error}: shorten it and decide again.", content_type="text/plain")
            return decide(claim, request.user, decision, note, audit_sample=audit_sample)
    except (ReviewClosed, CannotUndo) as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    return HttpResponseBadRequest(f"press one of {', '.join(CLAIM_DECISIONS)} on a claim, or undo")


def _exclude(request, iteration: Iteration, left: int, right: int) -> HttpResponse | None:
    """Exclude the pair from training (exclude=1) or include it again (exclude=0)."""
    pair = get_object_or_404(
        PreferencePair, Q(chosen=left, rejected=right) | Q(chosen=right, rejected=left), iteration=iteration
    )
    try:
        set_excluded(pair, request.user, request.POST["exclude"] == "1")
    except ReviewClosed as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    return None


@reviewer_required
def pair_detail(request, number, left, right):
    """The pair page; its one form posts a decision on a claim, an undo, or the pair's exclusion. HTMX gets back
    only what a decision can change, swapped out of band: the claim's chip, both headings (scores, order) and
    the pair's status, re-read after the rebuild. Other chips, and any history a reviewer opened, stay."""
    if request.method != "POST":
        iteration = get_object_or_404(Iteration, number=number)
        pair = selectors.pair_view(iteration, left, right, reviewer=request.user)
        return render(request, "review/pair.html", {"iteration": iteration, "pair": pair})
    iteration, *answers = selectors.numbered_pair(number, left, right)  # a 404 before anything is recorded
    if "exclude" in request.POST:
        answer = _exclude(request, iteration, left, right)
    else:
        answer = record_posted(request, Claim.objects.filter(response__in=[left, right]))
    if isinstance(answer, HttpResponse):
        return answer
    if not request.htmx:
        return redirect("review-pair", number=number, left=left, right=right)
    if answer is None:  # an exclusion: no chip changed
        pair = selectors.pair_view(iteration, left, right, [], reviewer=request.user)
    else:
        pair = selectors.pair_after(iteration, *answers, answer, request.user)
    return render(request, "review/pair.html#changes", {"iteration": iteration, "pair": pair})


@reviewer_required
def spot_check(request, number):
    """The queue's next claims. A decision (or an undo) posted here is recorded, and the queue comes back with
    what it did: HTMX gets the queue itself, a plain post a redirect to it naming the review (`?last=`)."""
    iteration = get_object_or_404(Iteration, number=number)
    last = parse_id(request.GET.get("last", ""))
    if request.method == "POST":
        answer = record_posted(request, Claim.objects.filter(response__iteration=iteration))
        if isinstance(answer, HttpResponse):
            return answer
        if not request.htmx:
            return redirect(f"{reverse('review-queue', args=[number])}?last={answer.review.pk}")
        last = answer.review.pk
    context = {"iteration": iteration, "queue": selectors.queue_view(iteration, request.user, last)}
    return render(request, "review/spot_check.html#queue" if request.htmx else "review/spot_check.html", context)
