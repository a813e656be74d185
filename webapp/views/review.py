"""Review pages: the pair list, the pair page and the spot-check queue; every decision appends a Review.

Reviewers (the `reviewer` group) and staff only. Objects are looked up through the iteration in the URL, so
an id from another iteration (or a claim of another answer) is a 404. A pair page is addressed by its two
answers rather than by the pair row: a review can flip the pair or turn it into a tie, which rebuilds the
instruction's pairs, and the page must still load afterwards to say so.
"""

from django import forms
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render

from webapp import selectors
from webapp.models import (
    Claim,
    Decision,
    Iteration,
    IterationStatus,
    PreferencePair,
    Response,
    Review,
    Verdict,
    effective_verdicts,
    with_labeler_verdict,
)
from webapp.permissions import reviewer_required
from webapp.review import ReviewClosed, record_review, set_excluded
from webapp.selectors import QUEUE_WINDOW, spot_check_queue

YES_NO = [("", "any"), ("yes", "yes"), ("no", "no")]


class PairFilter(forms.Form):
    iteration = forms.IntegerField(required=False, min_value=1)
    reviewed = forms.ChoiceField(choices=YES_NO, required=False)
    excluded = forms.ChoiceField(choices=YES_NO, required=False)
    min_gap = forms.IntegerField(required=False, min_value=1)
    max_gap = forms.IntegerField(required=False, min_value=1)
    source = forms.CharField(required=False, max_length=100)
    sort = forms.ChoiceField(
        choices=[("-gap", "largest gap first"), ("gap", "smallest gap first"), ("-id", "newest"), ("id", "oldest")],
        required=False,
    )
    after = forms.RegexField(r"^\d+\.\d+$", required=False)


@reviewer_required
def pair_list(request):
    form = PairFilter(request.GET)
    filters = form.cleaned_data if form.is_valid() else dict.fromkeys(PairFilter.base_fields)
    choice = selectors.iteration_choice(filters["iteration"])
    context = {
        "form": form,
        "iterations": choice.iterations,
        "iteration": choice.shown,
        "page": selectors.pair_page(choice.shown, filters, request.GET) if choice.shown else None,
    }
    return render(request, "review/pair_list.html#results" if request.htmx else "review/pair_list.html", context)


def _pair_responses(iteration: Iteration, left: int, right: int) -> tuple[Response, Response]:
    responses = {
        r.pk: r
        for r in Response.objects.filter(iteration=iteration, pk__in=[left, right]).select_related("instruction")
    }
    if len(responses) != 2 or responses[left].instruction_id != responses[right].instruction_id:
        raise Http404("not two answers to one instruction of this iteration")
    return responses[left], responses[right]


# The sides' headings by the pair's state after reviews: (left, right).
HEADINGS = {
    "flipped": ("Was chosen, now rejected", "Was rejected, now chosen"),
    "paired": ("Chosen", "Rejected"),
    "unpaired": ("Listed as chosen", "Listed as rejected"),
}


def _with_verdicts(iteration: Iteration, claims) -> list[Claim]:
    """The claims, each with its effective verdict, who decided it and its review history."""
    claims = list(with_labeler_verdict(claims, iteration.labeler))
    reviews = list(Review.objects.filter(claim__in=claims).select_related("reviewer").order_by("created_at", "pk"))
    decisions = [(review.claim_id, review.decision) for review in reviews]
    rows = [(c.pk, c.response_id, c.labeler_accepted, c.p_yes) for c in claims]
    verdicts = effective_verdicts(rows, decisions)
    history = {}
    for review in reviews:
        history.setdefault(review.claim_id, []).append(review)
    for claim in claims:
        verdict = verdicts[claim.pk]
        claim.effective_accepted, claim.decided_by, claim.p_yes = verdict.accepted, verdict.decided_by, verdict.p_yes
        claim.history = history.get(claim.pk, [])
        decisive = [r for r in claim.history if r.decision != Decision.UNSURE]
        claim.decider = decisive[-1].reviewer.get_username() if decisive else None
    return claims


def _pair_context(iteration: Iteration, left: int, right: int, claim_ids: list[int] | None = None) -> dict:
    """The two answers of one instruction side by side, each claim with its effective verdict and history.

    `claim_ids`: only these claims (as `changed`), for an answer to a decision that swaps just what changed.
    """
    left, right = _pair_responses(iteration, left, right)
    claims = Claim.objects.filter(response__in=[left, right]).order_by("index")
    if claim_ids is not None:
        claims = claims.filter(pk__in=claim_ids)
    claims = _with_verdicts(iteration, claims)
    left.claim_list = [c for c in claims if c.response_id == left.pk]
    right.claim_list = [c for c in claims if c.response_id == right.pk]
    pairs = list(PreferencePair.objects.filter(iteration=iteration, instruction=left.instruction_id).order_by("pk"))
    row = next((p for p in pairs if {p.chosen_id, p.rejected_id} == {left.pk, right.pk}), None)
    flipped = row is not None and row.chosen_id == right.pk
    left.heading, right.heading = HEADINGS["flipped" if flipped else "paired" if row else "unpaired"]
    return {
        "iteration": iteration,
        "instruction": left.instruction,
        "left": left,
        "right": right,
        "changed": claims,
        "row": row,
        "flipped": flipped,
        "tie": left.score is not None and left.score == right.score,
        "other_pairs": [p for p in pairs if p is not row],
        "open": iteration.status == IterationStatus.REVIEWING,
    }


def _posted_decision(request) -> tuple[str, int] | None:
    """The named submit button pressed: its name is the decision, its value the claim."""
    for decision in Decision.values:
        if request.POST.get(decision, "").isdigit():
            return decision, int(request.POST[decision])
    return None


def _record(request, claims) -> HttpResponse | None:
    """Record the decision posted on one of `claims`; an error response when it cannot be recorded."""
    posted = _posted_decision(request)
    if posted is None:
        return HttpResponseBadRequest(f"press one of {', '.join(Decision.values)} on a claim")
    decision, claim_id = posted
    claim = get_object_or_404(claims.select_related("response"), pk=claim_id)
    try:
        record_review(claim, request.user, decision, request.POST.get("note", ""))
    except ReviewClosed as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    return None


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
    """The pair page; its one form posts a decision on a claim or the pair's exclusion. HTMX gets back only
    what a decision can change, swapped out of band: the claim's chip, both headings (scores, order) and
    the pair's status, re-read after the rebuild. Other chips, and any history a reviewer opened, stay."""
    iteration = get_object_or_404(Iteration, number=number)
    if request.method != "POST":
        return render(request, "review/pair.html", _pair_context(iteration, left, right))
    _pair_responses(iteration, left, right)
    if "exclude" in request.POST:
        error = _exclude(request, iteration, left, right)
    else:
        error = _record(request, Claim.objects.filter(response__in=[left, right]))
    if error:
        return error
    if not request.htmx:
        return redirect("review-pair", number=number, left=left, right=right)
    posted = _posted_decision(request)  # None for an exclusion: no chip changed
    changed = [posted[1]] if posted else []
    return render(request, "review/pair.html#changes", _pair_context(iteration, left, right, changed))


def _queue_context(request, iteration: Iteration) -> dict:
    queue = spot_check_queue(iteration)
    item = Verdict.objects.select_related("claim__response__instruction").get(pk=queue[0]) if queue else None
    if item:  # an unreviewed claim: its effective verdict is the labeler's, for the chip to show
        claim = item.claim
        claim.effective_accepted, claim.p_yes, claim.decided_by = item.accepted, item.p_yes, "labeler"
        claim.decider, claim.history = None, []
    # The reviewer's own count: it grows with one person's work, not with the iteration.
    done = Review.objects.filter(reviewer=request.user, iteration=iteration).aggregate(n=Count("claim", distinct=True))[
        "n"
    ]
    return {
        "iteration": iteration,
        "item": item,
        "waiting": len(queue),
        "window": QUEUE_WINDOW,
        "done": done,
        "open": iteration.status == IterationStatus.REVIEWING,
    }


@reviewer_required
def spot_check(request, number):
    """The queue's next claim; a decision posted here is recorded and HTMX gets the claim after it."""
    iteration = get_object_or_404(Iteration, number=number)
    if request.method == "POST":
        if error := _record(request, Claim.objects.filter(response__iteration=iteration)):
            return error
        if not request.htmx:
            return redirect("review-queue", number=number)
    context = _queue_context(request, iteration)
    return render(request, "review/spot_check.html#queue" if request.htmx else "review/spot_check.html", context)
