"""How far an iteration has got: per stage, the sum of its chunk jobs' progress (one query)."""

from dataclasses import dataclass

from django.db.models import Count, Q, Sum

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

    @property
    def percent(self) -> int:
        if self.jobs and self.succeeded == self.jobs:
            return 100
        return int(100 * self.done / self.total) if self.total else 0


def iteration_progress(iteration_id: int) -> list[StageProgress]:
    rows = (
        Job.objects.filter(iteration_id=iteration_id)
        .values("kind")
        .annotate(
            done=Sum("done"),
            total=Sum("total"),
            jobs=Count("id"),
            succeeded=Count("id", filter=Q(state=JobState.SUCCEEDED)),
            failed=Count("id", filter=Q(state=JobState.FAILED)),
            running=Count("id", filter=Q(state=JobState.RUNNING)),
        )
    )
    order = [k for k in Job.Kind.values]
    return sorted((StageProgress(**row) for row in rows), key=lambda s: order.index(s.kind))
