"""The calibration page of an iteration's labeler: its reliability diagram, calibration error, best margin and
the "what if" of a margin on the pairs; staff apply a margin there (webapp.review.service.apply_margin)."""

from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from webapp.accounts.permissions import reviewer_required, staff_required
from webapp.iterations.charts import as_data, reliability_chart
from webapp.models import Iteration, IterationStatus
from webapp.review.audit_sample import audit_result, latest_sample
from webapp.review.calibration import calibration, labeler_agreement, what_if
from webapp.review.service import BadMargin, ReviewClosed, apply_margin


class MarginForm(forms.Form):
    margin = forms.FloatField(
        min_value=-1.0, max_value=1.0, help_text="Accepted when p_yes > p_no + margin (0: RLAIF-V's rule)"
    )


@reviewer_required
def calibration_page(request, number):
    iteration = get_object_or_404(Iteration, number=number)
    figures = calibration(iteration)
    suggested = figures.fit.margin if figures.fit else 0.0
    form = MarginForm(request.GET if "margin" in request.GET else None, initial={"margin": round(suggested, 4)})
    margin = form.cleaned_data["margin"] if form.is_bound and form.is_valid() else round(suggested, 4)
    sample = latest_sample(iteration)
    context = {
        "iteration": iteration,
        "figures": figures,
        "form": form,
        "margin": margin,
        "changes": what_if(iteration, margin) if iteration.status == IterationStatus.REVIEWING else None,
        "history": (iteration.metrics or {}).get("margins", []),
        "agreement": labeler_agreement(iteration),
        "audit": audit_result(sample) if sample else None,
        "charts": as_data([reliability_chart(figures.bins)]),
    }
    return render(request, "review/calibration.html", context)


@require_POST
@staff_required("webapp.change_iteration")
def margin_apply(request, number):
    """Apply a margin: every answer re-scored and every pair rebuilt under it, recorded on the iteration."""
    iteration = get_object_or_404(Iteration, number=number)
    form = MarginForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"margin: {' '.join(form.errors['margin'])}")
        return redirect("iteration-calibration", number=number)
    margin = form.cleaned_data["margin"]
    try:
        changes = apply_margin(iteration.pk, request.user, margin)
    except (BadMargin, ReviewClosed) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Margin {margin:g} applied to {iteration}: {changes.changed} pairs changed, {changes.appeared} "
            f"appeared, {changes.disappeared} disappeared.",
        )
    return redirect(f"{reverse('iteration-calibration', args=[number])}?margin={margin:g}")
