"""The dashboard (the home page): every iteration's progress, counts, scores, agreement and audit estimate,
trends across them, and the evaluated iterations' strategies compared (webapp.dashboard.comparison).

Running iterations poll the iteration page's progress fragment (webapp/iterations/views.py), which stops the
polling once the iteration leaves its active stages. Any signed-in user may look; one outside the reviewer
group sees it read-only (no links into the review and iteration pages, which would refuse them).
"""

from django.shortcuts import render

from webapp.dashboard.comparison import compare
from webapp.dashboard.headline import headline, next_step
from webapp.iterations import lifecycle
from webapp.iterations.baseline import start_of
from webapp.iterations.charts import as_data, score_chart, trend_charts
from webapp.iterations.metrics import iteration_stats
from webapp.iterations.monitors import monitor
from webapp.models import InstructionSource, Iteration, IterationStatus
from webapp.review.audit_sample import latest_audits, with_latest_audit

SHOWN = 20


def index(request):
    stats = iteration_stats(list(with_latest_audit(Iteration.objects.order_by("-number"))[:SHOWN]))
    latest = stats[0].iteration if stats else None
    start = start_of([s.iteration for s in reversed(stats)])
    trends = as_data(trend_charts(list(reversed(stats)), start))
    evaluated = next((s.iteration for s in stats if "eval" in (s.iteration.metrics or {})), latest)
    scores = [score_chart(s) for s in stats]
    audits = latest_audits([s.iteration for s in stats])
    measured = next((s.iteration for s in stats if "eval" in (s.iteration.metrics or {})), None)
    context = {
        # The lead: held-out hallucination from the start to now, the labeler's error beside it; what comes next.
        "headline": headline(measured, start, audits.get(measured.pk) if measured else None),
        "next_step": next_step(latest),
        # The loop goes on: a trained, evaluated iteration's checkpoint is the next one's default policy.
        "next_from": latest if latest and latest.status == IterationStatus.DONE and latest.checkpoint else None,
        # each iteration, its score histogram and its latest audit
        "rows": [(s, chart, audits.get(s.iteration.pk)) for s, chart in zip(stats, scores, strict=True)],
        "compared": compare([s.iteration for s in stats]),
        # the latest evaluated iteration's answers against the start, and its pairs
        "monitor": monitor(evaluated, start) if evaluated else None,
        "active": set(lifecycle.ACTIVE),
        "trends": trends,
        "start": start,
        "charts": trends + as_data([chart for chart in scores if chart]),
        "sources": InstructionSource.objects.filter(instructions__gt=0),
    }
    return render(request, "dashboard/index.html", context)
