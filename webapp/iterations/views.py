"""Iteration pages: everyone who may review can watch; only staff create, launch, approve, resume, cancel."""

import json

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from webapp.accounts import audit
from webapp.accounts.permissions import reviewer_required, staff_required
from webapp.ids import parse_id
from webapp.iterations import eta, lifecycle
from webapp.iterations.actions import buttons, run_action
from webapp.iterations.baseline import start_for
from webapp.iterations.charts import as_data, training_charts
from webapp.iterations.config import engine_settings
from webapp.iterations.dispatch import stage_queues
from webapp.iterations.forms import IterationForm
from webapp.iterations.metric_names import figures
from webapp.iterations.monitors import monitor
from webapp.iterations.progress import iteration_progress
from webapp.models import Iteration, Job, JobKind


@reviewer_required
def iteration_list(request):
    iterations = Iteration.objects.order_by("-number")[:100]
    return render(request, "iterations/list.html", {"iterations": iterations})


@staff_required("webapp.add_iteration")
def iteration_new(request):
    """A new draft; the form starts from the settings of iteration `?from=N`, else of the latest one."""
    number = request.GET.get("from", "")
    iterations = Iteration.objects.order_by("-number")
    wanted = parse_id(number)  # "²" is a digit to isdigit(), not to int()
    previous = get_object_or_404(Iteration, number=wanted) if wanted is not None else iterations.first()
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
        "actions": buttons(iteration),
    }
    if request.htmx:
        # The iteration page polls its status with the buttons it allows; the dashboard, the status alone.
        fragment = "iterations/detail.html#live" if request.htmx.target == "live" else "iterations/progress.html"
        response = render(request, fragment, context)
        # The page polls while the iteration works; a finished one tells HTMX to stop.
        return response if context["active"] else HttpResponseStopPolling(response.content)
    train_jobs = Job.objects.filter(iteration=iteration, kind=JobKind.TRAIN).order_by("chunk")
    context["charts"] = as_data(training_charts(list(train_jobs)))
    context["figures"] = figures(iteration.metrics)
    context["monitor"] = monitor(iteration, start_for(iteration))
    context["can_export"] = (
        request.user.is_staff and request.user.has_perm("webapp.view_preferencepair") and iteration.pairs.exists()
    )
    context["events"] = audit.recent(iteration)
    # JSON, as the admin's settings field and the new-iteration form take it (a Python dict read True, '…').
    context["settings_json"] = json.dumps(iteration.config, indent=2, sort_keys=True)
    context["engines"] = engine_settings(iteration)
    context["queues"] = stage_queues(iteration)
    if iteration.status == Iteration.Status.DRAFT:
        context["estimate"] = eta.estimate(iteration)
    return render(request, "iterations/detail.html", context)


@require_POST
@staff_required("webapp.change_iteration")
def iteration_action(request, number, action):
    iteration = get_object_or_404(Iteration, number=number)
    run_action(request, iteration, action)
    return redirect("iteration", number=number)
