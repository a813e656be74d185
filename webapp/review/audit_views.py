"""The audit page: claims of an iteration drawn at random, judged blind, and the labeler's error rate they
estimate (webapp.review.audit_sample). Reviewers judge; staff draw the sample."""

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from labeling.audit import STRATIFIED
from webapp.accounts.permissions import reviewer_required, staff_required
from webapp.ids import parse_id
from webapp.models import AuditDesign, Claim, Iteration, IterationStatus
from webapp.review import selectors
from webapp.review.audit_sample import (
    DEFAULT_SIZE,
    MAX_SIZE,
    SHOWN,
    NothingToAudit,
    audit_result,
    latest_sample,
    start_audit,
    waiting_items,
)
from webapp.review.views import record_posted

STALE_SAMPLE = "A newer audit sample of this iteration was drawn meanwhile: reload the page to judge its claims."


class StartAuditForm(forms.Form):
    design = forms.ChoiceField(choices=AuditDesign.choices, initial=STRATIFIED)
    size = forms.IntegerField(min_value=1, max_value=MAX_SIZE, initial=DEFAULT_SIZE, help_text="Claims to draw")


def _context(iteration: Iteration, reviewer, last: int | None) -> dict:
    sample = latest_sample(iteration)
    context = {"iteration": iteration, "sample": sample, "form": StartAuditForm(), "open": False}
    if sample is None:
        return context
    waiting = waiting_items(sample)
    return context | {
        "result": audit_result(sample),
        "items": list(waiting.select_related("claim__response__instruction")[:SHOWN]),
        "waiting": waiting.count(),
        "open": iteration.status == IterationStatus.REVIEWING,
        "outcome": selectors.outcome(iteration, reviewer, last) if last else None,
    }


@reviewer_required
def audit(request, number):
    """The sample's next claims and its estimate. A decision (or an undo) posted here is recorded as an audit
    review; HTMX gets the page's audit section back, a plain post a redirect naming the review (`?last=`)."""
    iteration = get_object_or_404(Iteration, number=number)
    last = parse_id(request.GET.get("last", ""))
    if request.method == "POST":
        sample = latest_sample(iteration)
        if sample is None or request.POST.get("sample") != str(sample.pk):
            return HttpResponse(STALE_SAMPLE, status=409, content_type="text/plain")
        drawn = Claim.objects.filter(response__iteration=iteration, pk__in=sample.items.values("claim"))
        answer = record_posted(request, drawn, audit_sample=sample)  # a claim not drawn is a 404
        if isinstance(answer, HttpResponse):
            return answer
        if not request.htmx:
            return redirect(f"{reverse('review-audit', args=[number])}?last={answer.review.pk}")
        last = answer.review.pk
    context = _context(iteration, request.user, last)
    return render(request, "review/audit.html#audit" if request.htmx else "review/audit.html", context)


@require_POST
@staff_required("webapp.add_auditsample")
def audit_start(request, number):
    """Draw a new audit sample; the audit page serves it from now on."""
    iteration = get_object_or_404(Iteration, number=number)
    form = StartAuditForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{field}: {' '.join(e)}" for field, e in form.errors.items()))
    else:
        try:
            sample = start_audit(iteration, request.user, form.cleaned_data["design"], form.cleaned_data["size"])
            messages.success(request, f"Drew {sample.items.count()} claims of {iteration} at random ({sample}).")
        except NothingToAudit as exc:
            messages.error(request, str(exc))
    return redirect("review-audit", number=number)
