"""How far an iteration has got: per stage, the sum of its chunk jobs' progress, its throughput and time left."""

from dataclasses import dataclass, replace

from django.db.models import Avg, Case, Count, FloatField, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Cast, Coalesce

from webapp.iterations.eta import STAGE_UNITS, Throughput, duration_text, stage_chunks, stage_etas
from webapp.models import Job, JobState


@dataclass(frozen=True)
class StageProgress:
    kind: str
    done: int
    total: int
    jobs: int
    succeeded: int
    failed: int
    running: int
    rate: Throughput | None = None
    seconds_left: float | None = None
    share_done: float = 0.0  # the mean of its chunks' shares done, chunks not started included
    not_started: int = 0  # chunks not started yet: their items are not counted in `total` until they are

    @property
    def finished(self) -> bool:
        return bool(self.jobs) and self.succeeded == self.jobs

    @property
    def speed(self) -> str:
        """The measured rate in the stage's own items, e.g. "12.5 claims/s"."""
        if self.rate is None:
            return ""
        per_second = self.rate.items_per_second
        value = per_second if per_second >= 0.1 else per_second * 60
        figure = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"  # 1,650, never 1.65e+03
        return f"{figure} {STAGE_UNITS[self.kind]}/{'s' if per_second >= 0.1 else 'min'}"

    @property
    def time_left(self) -> str:
        """ "about 3 min left" while the stage runs and has a measured rate; blank otherwise."""
        if self.finished or self.failed or self.seconds_left is None:
            return ""
        return f"about {duration_text(self.seconds_left)} left"

    @property
    def percent(self) -> int:
        """Of the stage's chunks (see `stage_totals`): done / total alone would run ahead while chunks wait."""
        if self.jobs and self.succeeded == self.jobs:
            return 100
        return int(100 * self.share_done)

    @property
    def counted(self) -> str:
        """ "1,536 / 2,845" in the stage's items, and how many chunks are not counted yet."""
        text = f"{self.done:,} / {self.total:,}"
        if self.not_started:
            text += f" (+{self.not_started} chunk{'s' if self.not_started > 1 else ''} not started)"
        return text


def stage_totals() -> dict:
    """The aggregates a stage's progress is made of, for `.values(..., "kind").annotate(**stage_totals())`: the
    dashboard's query for every iteration and the iteration page's. A chunk counts in its stage's own items
    only once it starts (a label chunk learns its claims then); before that it counts as a chunk not started,
    and the share done is the mean of the chunks' shares (they hold equal numbers of instructions but the last)."""
    started = Q(started_at__isnull=False)
    chunk_share = Case(
        When(state=JobState.SUCCEEDED, then=Value(1.0)),
        When(started & Q(total__gt=0), then=Cast("done", FloatField()) / Cast("total", FloatField())),
        default=Value(0.0),
        output_field=FloatField(),
    )
    return {  # the share first: its F("done") and F("total") are the columns, not the sums named so below
        "share_done": Avg(chunk_share),
        "done": Coalesce(Sum("done", filter=started), Value(0), output_field=IntegerField()),
        "total": Coalesce(Sum("total", filter=started), Value(0), output_field=IntegerField()),
        "jobs": Count("id"),
        "succeeded": Count("id", filter=Q(state=JobState.SUCCEEDED)),
        "failed": Count("id", filter=Q(state=JobState.FAILED)),
        "running": Count("id", filter=Q(state=JobState.RUNNING)),
        "not_started": Count("id", filter=~started),
    }


def iteration_progress(iteration_id: int) -> list[StageProgress]:
    rows = Job.objects.filter(iteration_id=iteration_id).values("kind").annotate(**stage_totals())
    order = [k for k in Job.Kind.values]
    etas = stage_etas(stage_chunks(iteration_id))
    stages = (StageProgress(**row, rate=etas[row["kind"]][0], seconds_left=etas[row["kind"]][1]) for row in rows)
    return without_early_etas(sorted(stages, key=lambda s: order.index(s.kind)))


def without_early_etas(stages: list[StageProgress]) -> list[StageProgress]:
    """No time left for a stage while one before it still runs: its chunks are still being made, so its total
    still grows ("46 s left" at 1,536 of 2,923 claims, which became 8,567). The baseline runs beside generate
    and holds nothing up."""
    feeding = False
    shown = []
    for stage in stages:
        shown.append(replace(stage, seconds_left=None) if feeding else stage)
        if stage.kind != Job.Kind.BASELINE and not stage.finished:
            feeding = True
    return shown
