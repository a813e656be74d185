"""The self-reward labeling strategy, for the paper's ablation: `config["strategy"] = "self_reward"`.

Instead of a labeler judging the claims of each answer, the policy's own length-normalised implicit reward
(training.self_reward) ranks its answers. So the policy must be a DPO checkpoint, and its reference is
`config["reference"]` or else the policy of the iteration that trained it. The stages keep their shape (and
with it progress, resume and the review gate); for this strategy the runner (webapp.jobs.runner) runs these:
- divide: there is nothing to split; the responses move to `divided` with no claims;
- label: each response's reward, kept in the label job's `log` as {"response": id, "reward": r} records
  (there is no reward column; one job writes only its own chunk, so chunks never race);
- combine: per instruction the best answer against the worst, the second best against the second worst, up
  to `pairs_per_instruction`; the pair's score gap is their rank distance, as rewards are not integers.
The pairs have no claims: reviewers can exclude them, and the export keeps their order.
"""

from itertools import groupby
from pathlib import Path

from training.dpo import read_record
from webapp.iterations.config import config
from webapp.jobs.base import commit_chunk
from webapp.jobs.engines import reward_models
from webapp.models import Iteration, Job, JobKind, PreferencePair, Response, ResponseStatus
from webapp.places import model_folder

DEFAULT_BETA = 0.1


def reference_for(iteration: Iteration) -> str:
    """The model the policy was trained from: config["reference"], else the trainer iteration's policy."""
    reference = (iteration.config or {}).get("reference")
    trainer = Iteration.objects.filter(checkpoint=iteration.policy).exclude(pk=iteration.pk).first()
    if not reference and trainer is None:
        raise ValueError(
            f"self-reward needs a DPO-trained policy: {iteration.policy!r} is no iteration's checkpoint "
            "(set config['reference'] to the model it was trained from)"
        )
    return reference or trainer.policy


def divide(job: Job) -> None:
    responses = Response.objects.filter(
        iteration=job.iteration, instruction_id__in=job.instruction_ids, status=ResponseStatus.GENERATED
    )
    job.start(total=responses.count())
    commit_chunk(job, lambda: responses.update(status=ResponseStatus.DIVIDED))


def label(job: Job) -> None:
    from training.self_reward import implicit_rewards  # torch: loaded by the worker that needs it

    iteration = job.iteration
    responses = list(
        Response.objects.filter(
            iteration=iteration,
            instruction_id__in=job.instruction_ids,
            status__in=[ResponseStatus.DIVIDED, ResponseStatus.LABELED],
        )
        .select_related("instruction")
        .order_by("instruction_id", "seed")
    )
    job.start(total=len(responses))
    models = reward_models(iteration.policy, reference_for(iteration), stage=job.kind)
    beta = ((read_record(model_folder(iteration.policy)) or {}).get("settings") or {}).get("beta", DEFAULT_BETA)
    rewards = []
    for _, group in groupby(responses, key=lambda r: r.instruction_id):
        group = list(group)
        instruction = group[0].instruction
        image, texts = Path(instruction.image.path), [r.text for r in group]
        values = implicit_rewards(models, image, instruction.question, texts, beta)
        rewards += [{"response": r.pk, "reward": value} for r, value in zip(group, values, strict=True)]
        job.progress(len(rewards))

    def write():
        Job.objects.filter(pk=job.pk).update(log=rewards)
        Response.objects.filter(pk__in=[r.pk for r in responses], status=ResponseStatus.DIVIDED).update(
            status=ResponseStatus.LABELED
        )

    commit_chunk(job, write)


def combine(job: Job) -> None:
    from training.self_reward import Rewarded, reward_pairs

    iteration, cfg = job.iteration, config(job.iteration)
    rewards = {}
    for log in Job.objects.filter(iteration=iteration, kind=JobKind.LABEL).values_list("log", flat=True):
        rewards.update({record["response"]: record["reward"] for record in log})
    responses = Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED, pk__in=list(rewards))
    answers = [Rewarded(r.pk, r.instruction_id, r.text, rewards[r.pk]) for r in responses.order_by("pk")]
    job.start(total=len(answers))
    pairs = [
        PreferencePair(
            iteration=iteration,
            instruction_id=chosen.instruction_id,
            chosen_id=chosen.id,
            rejected_id=rejected.id,
            score_gap=gap,
        )
        for chosen, rejected, gap in reward_pairs(answers, k=cfg["pairs_per_instruction"])
    ]
    commit_chunk(job, lambda: PreferencePair.objects.bulk_create(pairs, ignore_conflicts=True))
