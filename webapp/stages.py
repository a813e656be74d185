"""The work of one chunk job per stage: read the chunk from the database, call `labeling`, write the rows.

Every stage is idempotent: it computes only what is missing (unique constraints + skipping rows that exist),
writes its rows and marks its job done in one transaction, and writes nothing if the iteration was
cancelled or failed meanwhile. Running a job twice (a retry, a re-queued job) gives the same rows as once.
"""

import logging
from pathlib import Path

from django.db import transaction

from labeling.backends.base import Sampling
from labeling.combine import ScoredResponse, combine_pairs
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer, divide
from labeling.generate import Instruction as LabelingInstruction
from labeling.generate import candidate_seeds, generate_candidates
from webapp import lifecycle, self_reward_jobs, training_jobs
from webapp.engines import backend_for
from webapp.heartbeat import heartbeat
from webapp.models import (
    Claim,
    Instruction,
    Iteration,
    Job,
    JobKind,
    JobState,
    PreferencePair,
    Response,
    ResponseStatus,
    Verdict,
    response_scores,
)

log = logging.getLogger(__name__)


def batched(items: list, size: int):
    """itertools.batched (Python 3.12) for 3.11."""
    return (items[i : i + size] for i in range(0, len(items), size))


class Stopped(Exception):
    """The iteration left this stage (cancelled, failed) while the chunk ran: its rows are not written."""


def _commit(job: Job, write) -> None:
    """Write the chunk's rows and mark the job done atomically, unless the iteration has moved on."""
    stage = lifecycle.STAGE_OF_JOB[job.kind]
    with transaction.atomic():
        if not Iteration.objects.filter(pk=job.iteration_id, status=stage).exists():
            raise Stopped
        write()
        job.succeed()


def _clean(text: str) -> str:
    return text.replace("\x00", "").strip()


def generate(job: Job) -> None:
    iteration, cfg = job.iteration, lifecycle.config(job.iteration)
    seeds = candidate_seeds(cfg["n"], cfg["seed"])
    instructions = list(Instruction.objects.filter(pk__in=job.instruction_ids).order_by("pk"))
    have = set(
        Response.objects.filter(iteration=iteration, instruction__in=instructions).values_list("instruction", "seed")
    )
    todo = [i for i in instructions if any((i.pk, seed) not in have for seed in seeds)]
    job.start(total=len(instructions))
    sampling = Sampling(temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"])
    rows, done = [], len(instructions) - len(todo)
    if todo:
        backend = backend_for(iteration.engine, iteration.policy)
        for batch in batched(todo, cfg["generate_batch"]):
            inputs = [LabelingInstruction(i.pk, Path(i.image.path), i.question) for i in batch]
            for c in generate_candidates(backend, inputs, n=cfg["n"], sampling=sampling, base_seed=cfg["seed"]):
                if (c.instruction_id, c.seed) not in have:
                    rows.append(
                        Response(iteration=iteration, instruction_id=c.instruction_id, seed=c.seed, text=_clean(c.text))
                    )
            done += len(batch)
            job.progress(done)
    _commit(job, lambda: Response.objects.bulk_create(rows, ignore_conflicts=True))


def divide_responses(job: Job) -> None:
    iteration = job.iteration
    responses = list(
        Response.objects.filter(
            iteration=iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.GENERATED
        ).select_related("instruction")
    )
    job.start(total=len(responses))
    if iteration.splitter == "rule":
        splitter, backend, name = "rule", None, "rule"
    else:
        splitter, name = "rlaifv", f"rlaifv:{iteration.splitter}"
        backend = backend_for(iteration.engine, iteration.policy, text_model=iteration.splitter)
    results = divide([QuestionAnswer(r.instruction.question, r.text) for r in responses], splitter, backend)
    claims = []
    for response, result in zip(responses, results, strict=True):
        if result.ok:
            response.status, response.error = ResponseStatus.DIVIDED, ""
            claims += [
                Claim(response=response, index=n, text=_clean(c.text), question=_clean(c.question), splitter=name)
                for n, c in enumerate(result.claims)
            ]
        else:
            response.status, response.error = ResponseStatus.SPLIT_FAILED, result.failure
    job.progress(len(responses))

    def write():
        Claim.objects.bulk_create(claims, ignore_conflicts=True)
        Response.objects.bulk_update(responses, ["status", "error"], batch_size=500)

    _commit(job, write)


class _ClaimImage:
    """A claim as conquer sees it: the image path and the polar question."""

    __slots__ = ("claim", "image", "question")

    def __init__(self, claim: Claim):
        self.claim, self.image, self.question = claim, Path(claim.response.instruction.image.path), claim.question


def label(job: Job) -> None:
    iteration, cfg = job.iteration, lifecycle.config(job.iteration)
    claims = list(
        Claim.objects.filter(response__iteration=iteration, response__instruction_id__in=job.instruction_ids)
        .exclude(verdicts__labeler=iteration.labeler)
        .select_related("response__instruction")
        .order_by("response__instruction_id", "response_id", "index")
    )
    job.start(total=len(claims))
    verdicts = []
    if claims:
        backend = backend_for(iteration.engine, iteration.labeler)
        for batch in batched(claims, cfg["label_batch"]):
            results, stats = label_claims(backend, [_ClaimImage(c) for c in batch])
            log.info("%s: %d claims, %.0f%% saved by dedup", job, stats.claims, 100 * stats.share_saved)
            for claim, yn in zip(batch, results, strict=True):
                p_yes, p_no = min(max(yn.p_yes, 0.0), 1.0), min(max(yn.p_no, 0.0), 1.0)
                verdicts.append(
                    Verdict(claim=claim, labeler=iteration.labeler, p_yes=p_yes, p_no=p_no, accepted=p_yes > p_no)
                )
            job.progress(len(verdicts))

    def write():
        Verdict.objects.bulk_create(verdicts, ignore_conflicts=True)
        Response.objects.filter(
            iteration=iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.DIVIDED
        ).update(status=ResponseStatus.LABELED)

    _commit(job, write)


def combine(job: Job) -> None:
    iteration, cfg = job.iteration, lifecycle.config(job.iteration)
    responses = list(response_scores(Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)))
    job.start(total=len(responses))
    combined = combine_pairs(
        [ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected) for r in responses],
        k=cfg["pairs_per_instruction"],
        seed=cfg["seed"],
        length_balance=cfg["length_balance"],
    )
    pairs = combined.pairs
    for r in responses:
        r.score = -r.n_rejected

    def write():
        # A review's rebuild of one instruction's pairs re-uses this r (webapp/review.py).
        locked = Iteration.objects.select_for_update().get(pk=iteration.pk)
        locked.metrics = (locked.metrics or {}) | {"length_ratio": combined.length_ratio}
        locked.save(update_fields=["metrics"])
        Response.objects.bulk_update(responses, ["score"], batch_size=500)
        PreferencePair.objects.bulk_create(
            [
                PreferencePair(
                    iteration=iteration,
                    instruction_id=p.instruction_id,
                    chosen_id=p.chosen_id,
                    rejected_id=p.rejected_id,
                    score_gap=p.score_gap,
                )
                for p in pairs
            ],
            ignore_conflicts=True,
        )

    _commit(job, write)


# Per job kind, the work it does; a self-reward iteration divides, labels and combines its own way.
WORK = {
    JobKind.GENERATE: generate,
    JobKind.DIVIDE: self_reward_jobs.by_strategy(divide_responses, self_reward_jobs.divide),
    JobKind.LABEL: self_reward_jobs.by_strategy(label, self_reward_jobs.label),
    JobKind.COMBINE: self_reward_jobs.by_strategy(combine, self_reward_jobs.combine),
    JobKind.TRAIN: training_jobs.train,
    JobKind.EVALUATE: training_jobs.evaluate,
}


def run_job(job_id: int, transient: tuple[type[Exception], ...], final_attempt: bool, worker: str = "") -> None:
    """Run one job: skip it when done or no longer wanted, fail the iteration on a lasting error.

    Transient errors propagate so the task retries them; on the last attempt they fail the iteration too.
    """
    job = Job.objects.select_related("iteration").filter(pk=job_id).first()
    if job is None or job.state in (JobState.SUCCEEDED, JobState.CANCELLED):
        return
    if job.iteration.status != lifecycle.STAGE_OF_JOB[job.kind]:
        return
    job.worker = worker
    try:
        with heartbeat(job.pk):
            WORK[job.kind](job)
    except Stopped:
        return
    except transient as exc:
        if final_attempt:
            _fail(job, exc)
        raise
    except Exception as exc:
        log.exception("%s failed", job)
        _fail(job, exc)
        return
    lifecycle.advance_if_stage_done(job.iteration, job.kind)


def _fail(job: Job, exc: Exception) -> None:
    message = f"{job.kind} chunk {job.chunk}: {type(exc).__name__}: {exc}"
    job.fail(message)
    lifecycle.fail(job.iteration, message)
