"""How long things take: a running stage's throughput and time left, and a whole iteration's before launch.

A stage measures itself from its own jobs' times: its throughput is the work of the last RECENT_CHUNKS finished
chunks over the wall time from the first one's start to the last one's finish, so chunks that ran side by side
on several workers count together, and a stage that speeds up or slows down is followed within a few chunks.
Work is counted in instructions (a chunk's share of them, by its done/total), since a chunk's own items change
unit once it starts (divide counts answers, label claims); the rate shown is in the stage's own items.

Before launch, an iteration is estimated from its sizes (instructions × n answers × the claims per answer
expected) and how long each stage took in the last iteration with the same models, scaled by the sizes' ratio.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max, Min
from django.utils import timezone

from webapp.iterations.config import config
from webapp.models import Claim, Iteration, Job, JobKind, JobState, Response

RECENT_CHUNKS = 5
STAGE_UNITS = {
    JobKind.GENERATE: "instructions",
    JobKind.DIVIDE: "answers",
    JobKind.LABEL: "claims",
    JobKind.COMBINE: "answers",
    JobKind.TRAIN: "steps",
    JobKind.EVALUATE: "answers",
    JobKind.BASELINE: "answers",
}
# Before launch generate is sized in answers: its cost grows with n, which its jobs (counting instructions) hide.
ESTIMATE_UNITS = STAGE_UNITS | {JobKind.GENERATE: "answers"}


@dataclass(frozen=True)
class Chunk:
    """One job as the measures see it: its weight in instructions, items done of total, its times."""

    weight: int
    done: int
    total: int
    started: datetime | None
    finished: datetime | None
    working: datetime | None = None  # when this run first reported work done (its setup ends there)
    working_from: int = 0  # items done at that report

    @property
    def measured_since_working(self) -> float:
        """Instructions' worth of work done since the first report."""
        return self.weight * (self.done - self.working_from) / self.total if self.total else 0.0

    @property
    def fraction(self) -> float:
        if self.finished:
            return 1.0
        return min(self.done / self.total, 1.0) if self.total else 0.0


@dataclass(frozen=True)
class Throughput:
    per_second: float  # instructions' worth of work per second
    items_per_second: float  # in the stage's own items (STAGE_UNITS)


def throughput(chunks: list[Chunk], now: datetime) -> Throughput | None:
    """The stage's rate over its last finished chunks; before any has finished, over the running ones since each
    first reported work done (the models a chunk loads first would make a long training look far longer), and
    None until one has reported twice."""
    finished = sorted((c for c in chunks if c.finished and c.started), key=lambda c: c.finished)[-RECENT_CHUNKS:]
    if finished:
        seconds = (max(c.finished for c in finished) - min(c.started for c in finished)).total_seconds()
        work, items = sum(c.weight * c.fraction for c in finished), sum(c.done for c in finished)
    else:
        running = [c for c in chunks if c.started and c.working]
        if not running:
            return None
        seconds = (now - min(c.working for c in running)).total_seconds()
        work = sum(c.measured_since_working for c in running)
        items = sum(c.done - c.working_from for c in running)
    if seconds <= 0 or work <= 0:
        return None
    return Throughput(work / seconds, items / seconds)


def seconds_left(chunks: list[Chunk], rate: Throughput | None) -> float | None:
    """The stage's remaining work at its measured rate; None until it has one."""
    if rate is None:
        return None
    return sum(c.weight * (1 - c.fraction) for c in chunks) / rate.per_second


def stage_chunks(iteration_id: int) -> dict[str, list[Chunk]]:
    rows = Job.objects.filter(iteration_id=iteration_id).values_list(
        "kind", "instruction_ids", "done", "total", "started_at", "finished_at", "state", "working_at", "working_from"
    )
    stages: dict[str, list[Chunk]] = {}
    for kind, ids, done, total, started, finished, state, working, working_from in rows:
        finished = finished if state == JobState.SUCCEEDED else None
        chunk = Chunk(len(ids) or 1, done, total, started, finished, working, working_from)
        stages.setdefault(kind, []).append(chunk)
    return stages


def stage_etas(stages: dict[str, list[Chunk]]) -> dict[str, tuple[Throughput | None, float | None]]:
    """Per stage: its measured throughput and the seconds it has left (None where not measured yet)."""
    now = timezone.now()
    etas = {}
    for kind, chunks in stages.items():
        rate = throughput(chunks, now)
        etas[kind] = (rate, seconds_left(chunks, rate))
    return etas


# ---- before launch ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageEstimate:
    kind: str
    size: float  # in STAGE_UNITS[kind]
    items_per_second: float
    seconds: float

    @property
    def units(self) -> str:
        return ESTIMATE_UNITS[self.kind]

    @property
    def duration(self) -> str:
        return duration_text(self.seconds)


@dataclass(frozen=True)
class IterationEstimate:
    basis: object  # the iteration measured
    claims_per_answer: float
    stages: list[StageEstimate]

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    @property
    def duration(self) -> str:
        return duration_text(self.seconds)


def sizes(instructions: int, cfg: dict, claims_per_answer: float, heldout: int, train_steps: float) -> dict:
    """Each stage's size in its own items: instructions × n answers × claims per answer, the DPO steps, the
    held-out answers."""
    answers = instructions * cfg["n"]
    return {
        JobKind.GENERATE: answers,
        JobKind.DIVIDE: answers,
        JobKind.LABEL: answers * claims_per_answer,
        JobKind.COMBINE: answers,
        JobKind.TRAIN: train_steps,
        JobKind.EVALUATE: heldout,
    }


def stage_seconds(iteration) -> dict[str, float]:
    """How long each stage of a past iteration ran: its first job's start to its last job's finish."""
    spans = (
        Job.objects.filter(iteration=iteration, state=JobState.SUCCEEDED)
        .values("kind")
        .annotate(start=Min("started_at"), end=Max("finished_at"))
    )
    return {row["kind"]: (row["end"] - row["start"]).total_seconds() for row in spans if row["start"] and row["end"]}


def measured_sizes(iteration) -> tuple[dict, float]:
    """A past iteration's stage sizes as they turned out, and its claims per answer."""
    answers = Response.objects.filter(iteration=iteration).count()
    claims = Claim.objects.filter(response__iteration=iteration).count()
    per_answer = claims / answers if answers else 0.0
    jobs = dict(
        Job.objects.filter(iteration=iteration, kind__in=[JobKind.TRAIN, JobKind.EVALUATE]).values_list("kind", "total")
    )
    instructions = iteration.instructions.count()
    measured = sizes(
        instructions, config(iteration), per_answer, jobs.get(JobKind.EVALUATE, 0), jobs.get(JobKind.TRAIN, 0)
    )
    return measured, per_answer


def basis_for(iteration):
    """The last iteration that ran with the same models (the same policy if there is one, else the same labeler,
    splitter and engine: the loop's next policy is a checkpoint of the same size)."""
    same = Iteration.objects.filter(
        labeler=iteration.labeler, splitter=iteration.splitter, engine=iteration.engine, jobs__state=JobState.SUCCEEDED
    ).exclude(pk=iteration.pk)
    same = same.distinct().order_by("-number")
    return same.filter(policy=iteration.policy).first() or same.first()


def estimate(iteration) -> IterationEstimate | None:
    """The iteration's stages estimated from the last one with the same models; None when none has run."""
    basis = basis_for(iteration)
    if basis is None:
        return None
    seconds = stage_seconds(basis)
    then, per_answer = measured_sizes(basis)
    cfg, instructions = config(iteration), iteration.instructions.count()
    ratio = (instructions * cfg["n"]) / max(then[JobKind.DIVIDE], 1)
    now = sizes(instructions, cfg, per_answer, then[JobKind.EVALUATE], then[JobKind.TRAIN] * ratio)
    stages = []
    for kind in JobKind.values:
        if kind not in seconds or not then.get(kind):
            continue
        rate = then[kind] / seconds[kind] if seconds[kind] > 0 else 0.0
        stages.append(StageEstimate(kind, now[kind], rate, now[kind] / rate if rate else seconds[kind]))
    return IterationEstimate(basis, per_answer, stages)


def duration_text(seconds: float) -> str:
    """A duration as people say it: "40 s", "12 min", "3 h 20 min", "2 d 5 h"."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def estimate_error(predicted: float, actual: float) -> float:
    """How far an estimate was off, as a share of what happened (+0.2: it said 20% longer)."""
    return (predicted - actual) / actual if actual else 0.0
