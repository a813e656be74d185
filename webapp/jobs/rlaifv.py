"""The RLAIF-V stages, one chunk job each: read the chunk from the database, call `labeling`, write the rows.

generate (the policy answers n times, one recorded seed each) → divide (answers into claims and polar
questions) → label (the labeler's P(yes) vs P(no) per question) → combine (scores and pairs, the whole
iteration at once). Each writes through `commit_chunk`, so a retried or re-sent job writes its rows once.
"""

import logging
from pathlib import Path

from labeling.answer_shape import answer_shape, shape_metrics
from labeling.backends.base import Sampling
from labeling.batching import batched
from labeling.combine import ScoredResponse, combine_pairs
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer
from labeling.divide import divide as divide_answers
from labeling.generate import candidate_seeds, generate_candidates
from labeling.shapes import question_is_true
from training.evaluate import labeler_accuracy, pair_truth
from webapp.iterations.config import config, engine_options, generator, labelers, splitter
from webapp.jobs.base import clean_text, commit_chunk, for_labeling, seed_key
from webapp.jobs.engines import backend_for
from webapp.models import (
    Claim,
    Instruction,
    Iteration,
    Job,
    PreferencePair,
    Response,
    ResponseStatus,
    Verdict,
    response_scores,
    with_labeler_verdict,
)

log = logging.getLogger(__name__)


def generate(job: Job) -> None:
    iteration, cfg = job.iteration, config(job.iteration)
    instructions = list(Instruction.objects.filter(pk__in=job.instruction_ids).order_by("pk"))
    have = set(
        Response.objects.filter(iteration=iteration, instruction__in=instructions).values_list("instruction", "seed")
    )
    todo = [
        i
        for i in instructions
        if any((i.pk, seed) not in have for seed in candidate_seeds(cfg["n"], cfg["seed"], seed_key(i), cfg["seeding"]))
    ]
    job.start(total=len(instructions))
    sampling = Sampling(temperature=cfg["temperature"], top_p=cfg["top_p"], max_new_tokens=cfg["max_new_tokens"])
    rows, done = [], len(instructions) - len(todo)
    if todo:
        backend = backend_for(
            iteration.engine, generator(iteration), options=engine_options(iteration, "policy"), stage=job.kind
        )
        for batch in batched(todo, cfg["generate_batch"]):
            inputs = [for_labeling(i) for i in batch]
            candidates = generate_candidates(
                backend, inputs, n=cfg["n"], sampling=sampling, base_seed=cfg["seed"], seeding=cfg["seeding"]
            )
            for c in candidates:
                if (c.instruction_id, c.seed) not in have:
                    rows.append(
                        Response(
                            iteration=iteration, instruction_id=c.instruction_id, seed=c.seed, text=clean_text(c.text)
                        )
                    )
            done += len(batch)
            job.progress(done)
    commit_chunk(job, lambda: Response.objects.bulk_create(rows, ignore_conflicts=True))


def divide(job: Job) -> None:
    iteration = job.iteration
    responses = list(
        Response.objects.filter(
            iteration=iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.GENERATED
        ).select_related("instruction")
    )
    job.start(total=len(responses))
    how = splitter(iteration)
    backend = None
    if how.model:
        options = engine_options(iteration, "splitter")
        backend = backend_for(iteration.engine, iteration.policy, how.model, options=options, stage=job.kind)
    results = divide_answers([QuestionAnswer(r.instruction.question, r.text) for r in responses], how.method, backend)
    claims = []
    for response, result in zip(responses, results, strict=True):
        if result.ok:
            response.status, response.error = ResponseStatus.DIVIDED, ""
            response.repeated_claims = answer_shape(response.text, [c.text for c in result.claims]).repeated_claims
            claims += [
                Claim(
                    response=response,
                    index=n,
                    text=clean_text(c.text),
                    question=clean_text(c.question),
                    divided_by=how.label,
                )
                for n, c in enumerate(result.claims)
            ]
        else:
            response.status, response.error = ResponseStatus.SPLIT_FAILED, result.failure
    job.progress(len(responses))

    def write():
        Claim.objects.bulk_create(claims, ignore_conflicts=True)
        Response.objects.bulk_update(responses, ["status", "error", "repeated_claims"], batch_size=500)

    commit_chunk(job, write)


class _ClaimImage:
    """A claim as conquer sees it: the image path and the polar question."""

    __slots__ = ("claim", "image", "question")

    def __init__(self, claim: Claim):
        self.claim, self.image, self.question = claim, Path(claim.response.instruction.image.path), claim.question


def label(job: Job) -> None:
    """Each labeler of the iteration (its own, and a second one if it has one) judges the chunk's claims it has
    not judged yet."""
    iteration, cfg = job.iteration, config(job.iteration)
    chunk = Claim.objects.filter(response__iteration=iteration, response__instruction_id__in=job.instruction_ids)
    todo = [
        (
            name,
            list(
                chunk.exclude(verdicts__labeler=name)
                .select_related("response__instruction")
                .order_by("response__instruction_id", "response_id", "index")
            ),
        )
        for name in labelers(iteration)
    ]
    job.start(total=sum(len(claims) for _, claims in todo))
    verdicts = []
    for name, claims in todo:
        if not claims:
            continue
        backend = backend_for(iteration.engine, name, options=engine_options(iteration, "labeler"), stage=job.kind)
        for batch in batched(claims, cfg["label_batch"]):
            results, stats = label_claims(backend, [_ClaimImage(c) for c in batch])
            log.info("%s: %d claims, %.0f%% saved by dedup", job, stats.claims, 100 * stats.share_saved)
            for claim, yn in zip(batch, results, strict=True):
                p_yes, p_no = min(max(yn.p_yes, 0.0), 1.0), min(max(yn.p_no, 0.0), 1.0)
                verdicts.append(Verdict(claim=claim, labeler=name, p_yes=p_yes, p_no=p_no, accepted=p_yes > p_no))
            job.progress(len(verdicts))

    def write():
        Verdict.objects.bulk_create(verdicts, ignore_conflicts=True)
        Response.objects.filter(
            iteration=iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.DIVIDED
        ).update(status=ResponseStatus.LABELED)

    commit_chunk(job, write)


def combine(job: Job, is_true=question_is_true) -> None:
    """Scores and pairs of the whole iteration; `is_true` reads a claim's truth where it is known (see
    `feedback_against_truth`)."""
    iteration, cfg = job.iteration, config(job.iteration)
    labeled = Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)
    responses = list(response_scores(labeled, repeats=cfg["reject_repeats"]))
    job.start(total=len(responses))
    combined = combine_pairs(
        [ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected) for r in responses],
        k=cfg["pairs_per_instruction"],
        seed=cfg["seed"],
        length_balance=cfg["length_balance"],
        chosen_is_best=cfg["chosen_is_best"],
    )
    pairs = combined.pairs
    for r in responses:
        r.score = -r.n_rejected
    metrics = {"length_ratio": combined.length_ratio, "pairs": pair_shapes(responses, pairs)}
    if feedback := feedback_against_truth(iteration, responses, pairs, is_true):
        metrics["feedback"] = feedback

    def write():
        # A review's rebuild of one instruction's pairs re-uses this r (webapp/review/service.py).
        locked = Iteration.objects.select_for_update().get(pk=iteration.pk)
        locked.metrics = (locked.metrics or {}) | metrics
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

    commit_chunk(job, write)


def pair_shapes(responses: list[Response], pairs) -> dict:
    """The chosen and the rejected answers' words and repeated claims (labeling.answer_shape), as combined: when
    the chosen answers repeat claims far more often than the rejected ones, DPO will teach repeating."""
    texts = {r.pk: r.text for r in responses}
    claims: dict[int, list[str]] = {}
    paired = [p.chosen_id for p in pairs] + [p.rejected_id for p in pairs]
    for chunk in batched(paired, 2000):
        for response, text in Claim.objects.filter(response__in=chunk).values_list("response", "text").iterator():
            claims.setdefault(response, []).append(text)
    figures = {}
    for side in ("chosen", "rejected"):
        shapes = [
            answer_shape(texts[getattr(p, f"{side}_id")], claims.get(getattr(p, f"{side}_id"), [])) for p in pairs
        ]
        measured = shape_metrics(shapes)
        figures |= {f"{side}_{key}": measured[key] for key in ("repetition_share", "mean_words")}
    return figures


def feedback_against_truth(iteration: Iteration, responses: list[Response], pairs, is_true) -> dict | None:
    """Where instructions carry their true objects (the shapes world): how often the labeler was right about
    the iteration's claims (`is_true(question, objects)` is a claim's truth), and how many pairs prefer the
    answer with fewer wrong objects. None elsewhere."""
    truth = dict(
        Instruction.objects.filter(iterations=iteration, objects_present__isnull=False).values_list(
            "pk", "objects_present"
        )
    )
    if not truth:
        return None
    claims = with_labeler_verdict(
        Claim.objects.filter(response__iteration=iteration, response__instruction__in=list(truth)),
        iteration.labeler,
        iteration.margin,
    ).filter(labeler_accepted__isnull=False)
    judgements = (
        (question, accepted, truth[instruction])
        for question, accepted, instruction in claims.values_list(
            "question", "labeler_accepted", "response__instruction"
        ).iterator()
    )
    texts = {r.pk: r.text for r in responses}
    known = [p for p in pairs if p.instruction_id in truth]
    return labeler_accuracy(judgements, is_true) | pair_truth(
        (texts[p.chosen_id], texts[p.rejected_id], truth[p.instruction_id]) for p in known
    )
