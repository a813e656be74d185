"""Iteration pages: everyone who may review can watch; only staff create, launch, approve, resume, cancel."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from webapp import lifecycle
from webapp.forms import IterationForm
from webapp.models import Iteration
from webapp.permissions import reviewer_required, staff_required
from webapp.progress import iteration_progress

ACTIONS = {
    "launch": lifecycle.launch,
    "approve": lifecycle.approve,
    "resume": lifecycle.resume,
    "cancel": lifecycle.cancel,
}


@reviewer_required
def iteration_list(request):
    iterations = Iteration.objects.order_by("-number")[:100]
    return render(request, "iterations/list.html", {"iterations": iterations})


@staff_required
def iteration_new(request):
    """A new draft; the form starts from the settings of iteration `?from=N`, else of the latest one."""
    number = request.GET.get("from", "")
    iterations = Iteration.objects.order_by("-number")
    previous = get_object_or_404(Iteration, number=number) if number.isdigit() else iterations.first()
    form = IterationForm(request.POST or None, previous=previous)
    if request.method == "POST" and form.is_valid():
        iteration = form.save(request.user)
        messages.success(request, f"{iteration} created as a draft on {iteration.instructions.count()} instructions.")
        return redirect("iteration", number=iteration.number)
    return render(request, "iterations/new.html", {"form": form})


@reviewer_required
def iteration_detail(request, number):
    iteration = get_object_or_404(Iteration, number=number)
    context = {
        "iteration": iteration,
        "stages": iteration_progress(iteration.pk),
        "active": iteration.status in lifecycle.ACTIVE,
        "n_instructions": iteration.instructions.count(),
    }
    if request.htmx:
        # The iteration page polls its status with the buttons it allows; the dashboard, the status alone.
        fragment = "iterations/detail.html#live" if request.htmx.target == "live" else "iterations/progress.html"
        response = render(request, fragment, context)
        # The page polls while the iteration works; a finished one tells HTMX to stop.
        return response if context["active"] else HttpResponseStopPolling(response.content)
    return render(request, "iterations/detail.html", context)


@require_POST
@staff_required
def iteration_action(request, number, action):
    iteration = get_object_or_404(Iteration, number=number)
    try:
        done = ACTIONS[action](iteration)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        if done:
            messages.success(request, f"{iteration}: {action} done.")
        else:
            messages.warning(request, f"{iteration} cannot {action} from status {iteration.status}.")
    return redirect("iteration", number=number)
