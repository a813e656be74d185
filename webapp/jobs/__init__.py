"""Jobs: what a worker does. A chunk Job of an iteration's stage, an upload's import, and the watchdog that
re-sends work whose worker died.

- `base`: what every job body shares (`Stopped`, `commit_chunk`, text cleaning);
- `rlaifv`: the RLAIF-V stages (generate, divide, label, combine);
- `whole_response`: the whole-response strategy's divide and label;
- `self_reward`: the self-reward strategy's divide, label and combine;
- `train_evaluate`: DPO training and the held-out evaluation;
- `engines`: the models a worker loads (labeling's backends), once per process and stage;
- `imports`: an upload's import, run by a CPU worker;
- `heartbeat`: a running job's proof of life for the watchdog; `watchdog`: re-sending stale jobs and uploads;
- `runner`: which body runs for a job, and `run_job(job_id)`, which `webapp.tasks` calls.

Imports iterations (the lifecycle, settings, counts), transfer (importing, exporting pairs to train on),
accounts and the models. Only `webapp.tasks` and the management commands import it: pages start work
through the lifecycle, which sends jobs by name.
"""
