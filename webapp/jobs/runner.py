"""Running one job: which body does the work (by job kind and the iteration's strategy), and what ends it.

`run_job` skips a job that is done or no longer wanted, runs its body with a heartbeat, and starts the next
stage when the job was its stage's last. It knows nothing of retries: an error propagates to the Celery
task (webapp.tasks), which retries the transient ones and calls `fail_job` once the job has failed for good.
"""

from webapp.iterations import lifecycle
from webapp.iterations.config import strategy
from webapp.jobs import rlaifv, self_reward, train_evaluate, whole_response
from webapp.jobs.base import Stopped
from webapp.jobs.heartbeat import heartbeat
from webapp.models import Job, JobKind, JobState

SHARED = {
    JobKind.GENERATE: rlaifv.generate,
    JobKind.TRAIN: train_evaluate.train,
    JobKind.EVALUATE: train_evaluate.evaluate,
    JobKind.BASELINE: train_evaluate.evaluate_baseline,
}
# Per strategy, per job kind, the work it does: a whole-response iteration divides its own way (one claim per
# answer), a self-reward iteration divides, labels and combines its own way.
WORK = {
    "rlaifv": SHARED | {JobKind.DIVIDE: rlaifv.divide, JobKind.LABEL: rlaifv.label, JobKind.COMBINE: rlaifv.combine},
    "whole_response": SHARED
    | {JobKind.DIVIDE: whole_response.divide, JobKind.LABEL: rlaifv.label, JobKind.COMBINE: whole_response.combine},
    "self_reward": SHARED
    | {JobKind.DIVIDE: self_reward.divide, JobKind.LABEL: self_reward.label, JobKind.COMBINE: self_reward.combine},
}


def run_job(job_id: int, worker: str = "") -> None:
    """Run one job (`worker` names who runs it); a job already done, or whose stage is over, is skipped."""
    job = Job.objects.select_related("iteration").filter(pk=job_id).first()
    if job is None or job.state in (JobState.SUCCEEDED, JobState.CANCELLED):
        return
    if job.iteration.status != job.stage:
        return
    job.worker = worker
    try:
        with heartbeat(Job.objects.filter(pk=job.pk, state=JobState.RUNNING)):
            WORK[strategy(job.iteration)][job.kind](job)
    except Stopped:
        return
    lifecycle.advance_if_stage_done(job.iteration, job.kind)


def fail_job(job_id: int, error: BaseException) -> None:
    """The job failed for good: record why on the job and fail its iteration (resume restarts the stage)."""
    job = Job.objects.select_related("iteration").filter(pk=job_id).first()
    if job is None or job.state in (JobState.SUCCEEDED, JobState.CANCELLED):
        return
    message = f"{job.kind} chunk {job.chunk}: {type(error).__name__}: {error}"
    job.fail(message)
    lifecycle.fail(job.iteration, message)
