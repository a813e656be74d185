"""The jobs layer: what a worker does with one chunk Job.

- `base`: what every job body shares (`Stopped`, `commit_chunk`, text cleaning);
- `rlaifv`: the RLAIF-V stages (generate, divide, label, combine);
- `self_reward`: the self-reward strategy's divide, label and combine;
- `train_evaluate`: DPO training and the held-out evaluation;
- `heartbeat`: a running job's proof of life for the watchdog;
- `runner`: which body runs for a job, and `run_job(job_id)`, which `webapp.tasks` calls.
"""
