"""The last two stages of an iteration, one whole-iteration job each: train the policy, then evaluate it.

train: export the iteration's effective pairs (excluded ones left out) as TRL rows and run DPO on them with
`python -m training dpo` in a child process (`accelerate launch` on more than one GPU), so that all the
GPU memory training used goes back when it ends. The worker frees its own cached models first. The child
prints progress lines; they become the job's step/total (the progress bar) and its `log`, one record per
logged step: {"step", "epoch", "loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins"}
(the loss curve). The checkpoint is trained into a temporary folder and moved to
MODELS_DIR/checkpoints/iteration-N when training succeeded; only then is it registered on the iteration
(a relative name, resolved under MODELS_DIR by every worker). A failed training registers nothing and fails
the iteration with the end of the child's output. DPO settings are the iteration's config keys that name a
`training.dpo.DPOSettings` field, over the paper's defaults; with `lora`, the adapter is merged so the next
iteration starts from full weights.

evaluate: the new checkpoint answers the held-out instructions (greedy unless `eval_temperature` is set;
`eval_limit` caps how many), the iteration's splitter and labeler judge the answers (training.evaluate), and
held-out instructions that carry their true objects (the shapes world) are scored against them (CHAIRs,
CHAIRi, recall, the labeler's accuracy: `truth_*` keys); CHAIR is computed when the config names COCO ground
truth: `coco_instances`, `coco_captions` and `coco_images`, the folder of the COCO image files, which is how
held-out images (stored by content, without their file names) are matched to COCO ids. Results go to
`iteration.metrics["eval"]`, the answers to `heldout_answers.jsonl` in the checkpoint folder (AMBER and
MMHal-Bench, where the config names their files, run after: webapp/jobs/benchmarks.py); the baseline (the
starting policy, beside the generate stage) to `metrics["baseline"]`, its answers under VAR_DIR/evaluations/.
"""

import ctypes
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Greatest

from training.dpo import DPOSettings, parse_progress
from webapp.iterations.baseline import evaluation_split, measurement
from webapp.iterations.config import COCO_KEYS, config, engine_options, eval_sampling, splitter
from webapp.jobs.base import Stopped, commit_chunk, for_labeling
from webapp.jobs.benchmarks import question_count, run_benchmarks
from webapp.jobs.engines import OnFirstUse, backend_for, release_models
from webapp.models import Instruction, Iteration, IterationStatus, Job
from webapp.places import SERVED, data_files, model_folder

HEARTBEAT_SECONDS = 1.0
LOSS_CURVE_KEYS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "rewards/accuracies", "rewards/margins")


class TrainingFailed(RuntimeError):
    """The DPO child process failed; the message ends with its last lines of output."""


def checkpoint_name(iteration: Iteration) -> str:
    """Where an iteration's checkpoint lives, relative to MODELS_DIR."""
    return f"checkpoints/iteration-{iteration.number}"


def dpo_settings(iteration: Iteration) -> DPOSettings:
    values = config(iteration)
    if values.get("lora"):
        values.setdefault("merge_lora", True)  # the next iteration's generate and DPO need full weights
    return DPOSettings.from_mapping(values)


def dpo_command(pairs: Path, policy: str, out: Path, dpo: DPOSettings) -> list[str]:
    import torch

    args = ["-m", "training", "dpo", f"--pairs={pairs}", f"--policy={policy}", f"--out={out}", *dpo.cli_args()]
    gpus = torch.cuda.device_count()
    if gpus > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={gpus}", *args]
    return [sys.executable, *args]


def _die_with_parent():
    """In the child, before exec: get SIGKILL when the worker dies, so no orphan keeps training on the GPU."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _finite(value):
    """A diverged run logs NaN or inf, which JSON columns (PostgreSQL's jsonb) refuse: store null instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _read_lines(stream, lines: queue.Queue):
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_streaming(job: Job, command: list[str]) -> list[dict]:
    """Run the DPO child, streaming its progress into the job; returns the loss-curve records.

    Every HEARTBEAT_SECONDS (output or not) the job's step/total/log are written, which is also the heartbeat
    the stale-job watchdog reads, and the child is killed if the iteration left the training stage.
    """
    proc = subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        preexec_fn=_die_with_parent,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=30)
    curve: list[dict] = []
    step, total = 0, job.total  # a retry starts from the step count an earlier run learnt (see `train`)
    next_write = 0.0
    try:
        while True:
            try:
                line = lines.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                line = ""
            record = parse_progress(line) if line else None
            if record:
                step, total = record.get("step") or step, record.get("total") or total
                if record.get("event") == "log" and "loss" in record:
                    curve.append({key: _finite(record[key]) for key in LOSS_CURVE_KEYS if key in record})
            elif line:
                tail.append(line.rstrip())
            if line is None or time.monotonic() >= next_write:
                Job.objects.filter(pk=job.pk).update(total=Greatest(Value(max(total, step)), F("done")), log=curve)
                job.progress(step)
                if not Iteration.objects.filter(pk=job.iteration_id, status=IterationStatus.TRAINING).exists():
                    raise Stopped
                next_write = time.monotonic() + HEARTBEAT_SECONDS
            if line is None:
                break
        if proc.wait() != 0:
            last = tail[-1] if tail else "no output"
            output = "\n".join(tail)
            raise TrainingFailed(f"`python -m training dpo` exited with status {proc.returncode}: {last}\n{output}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return curve


def _update_metrics(iteration: Iteration, key: str, value: dict, **fields) -> None:
    """Set metrics[key] (keeping the other keys) and `fields` on the iteration. Call in a transaction."""
    current = Iteration.objects.select_for_update().get(pk=iteration.pk)
    Iteration.objects.filter(pk=iteration.pk).update(metrics=(current.metrics or {}) | {key: value}, **fields)


def train(job: Job) -> None:
    from webapp.transfer.exporting import export_pairs  # pulls in `datasets`: seconds a worker need not pay at start-up

    iteration = job.iteration
    dpo = dpo_settings(iteration)  # a bad setting fails here, before any work
    # The child reports the number of steps once the trainer knows it; a retry keeps what an earlier run learnt
    # (the job was created with the number of instructions as its total).
    job.start(total=job.total if job.started_at else 0)
    release_models()
    name = checkpoint_name(iteration)
    final = Path(settings.MODELS_DIR) / name
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.partial"):  # left by a worker that died training
        shutil.rmtree(stale, ignore_errors=True)
    partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}.partial")
    try:
        with tempfile.TemporaryDirectory(prefix="rlaifv-pairs-") as tmp:
            exported = export_pairs(iteration, "trl", Path(tmp) / "pairs")
            command = dpo_command(Path(tmp) / "pairs", model_folder(iteration.policy), partial, dpo)
            curve = run_streaming(job, command)
        if final.exists():  # an earlier run that trained but was not registered (a crash, a cancel)
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    summary = {
        "pairs": exported.written,
        "steps": curve[-1]["step"] if curve else 0,
        "final_loss": curve[-1]["loss"] if curve else None,
        "details": {"ties_dropped": exported.ties_dropped, "flipped": exported.flipped, "options": dpo.cli_args()},
    }

    def write():
        _update_metrics(iteration, "train", summary, checkpoint=name)

    commit_chunk(job, write)


def _chair(cfg: dict, instructions: list[Instruction], answers) -> dict:
    """Object HalBench's CHAIR: ground truth from every instances / captions file named (the reference merges COCO
    train and val 2014), images matched in every folder named; objects read by rule, or listed by the chat model
    `chair_extractor` names on the openai server (the reference's GPT path)."""
    from training.chair import chair, find_image_ids, load_ground_truth

    missing = [key for key in COCO_KEYS if not cfg.get(key)]
    if missing:
        raise ValueError(f"CHAIR needs config {', '.join(missing)} (coco_images: the folder of the COCO images)")
    instances, captions, folders = (data_files(cfg[key], key) for key in COCO_KEYS)
    truth = load_ground_truth(instances, captions)
    wanted = {i.image_sha256: (i.width, i.height, i.image.size) for i in instructions}
    ids: dict[str, int] = {}
    for folder in folders:
        ids |= find_image_ids(truth, folder, {sha: shape for sha, shape in wanted.items() if sha not in ids})
    pairs = [(i, answer) for i, answer in zip(instructions, answers, strict=True) if i.image_sha256 in ids]
    matched = [(ids[i.image_sha256], answer.text) for i, answer in pairs]
    mentions = None
    if cfg.get("chair_extractor"):
        from training.object_extraction import extract_mentions

        extractor = backend_for(SERVED, cfg["chair_extractor"], stage="evaluate/extract")
        mentions = extract_mentions(extractor, [i.question for i, _ in pairs], [answer.text for _, answer in pairs])
    result = chair(matched, truth.objects, mentions).summary()
    return result | {"images_matched": len({image for image, _ in matched}), "extractor": cfg.get("chair_extractor")}


def evaluate(job: Job) -> None:
    """The trained checkpoint on the test split: metrics["eval"]."""
    iteration = job.iteration
    if not iteration.checkpoint:
        raise ValueError(f"{iteration} has no checkpoint to evaluate")
    result = _evaluation(job, iteration.checkpoint)
    commit_chunk(job, lambda: _update_metrics(iteration, "eval", result))


def evaluate_baseline(job: Job) -> None:
    """The starting policy on the test split, measured as `evaluate` measures the checkpoint: metrics["baseline"]
    (webapp/iterations/baseline.py)."""
    iteration = job.iteration
    result = _evaluation(job, iteration.policy)
    commit_chunk(job, lambda: _update_metrics(iteration, "baseline", result))


def _evaluation(job: Job, model: str) -> dict:
    """`model` answers each test instruction once; the answers are divided and judged by the iteration's labeler,
    checked against the truth where it is known, and measured for length and repeats."""
    from training.evaluate import answer_and_judge, answer_shapes, hallucination_rates, truth_scores

    iteration, cfg = job.iteration, config(job.iteration)
    instructions = evaluation_split(iteration)
    benchmarks = question_count(cfg)  # AMBER's and MMHal-Bench's questions, where the config names their files
    job.start(total=len(instructions) + benchmarks)
    details: dict = {"policy": model, "instructions": len(instructions), "measurement": measurement(iteration)}
    result: dict = {"details": details}  # the numbers at the top level are the ones plotted across iterations
    trained = model != iteration.policy
    if instructions:
        # A checkpoint is a local folder even when the iteration's models are served (openai)
        engine = "transformers" if trained and iteration.engine == Iteration.Engine.OPENAI else iteration.engine
        how = splitter(iteration)
        # Answer, divide, judge: one phase after another, each model loaded when its phase starts (the pool shuts
        # the previous phase's down first unless the budget holds both).
        policy_options, labeler_options = (
            engine_options(iteration, "policy", engine),
            engine_options(iteration, "labeler"),
        )
        divider = None
        if how.model:
            options = engine_options(iteration, "splitter", engine)
            divider = OnFirstUse(
                lambda: backend_for(engine, model, how.model, options=options, stage="evaluate/divide")
            )
        sampling = eval_sampling(cfg)
        answers = answer_and_judge(
            OnFirstUse(lambda: backend_for(engine, model, options=policy_options, stage="evaluate/answer")),
            OnFirstUse(
                lambda: backend_for(
                    iteration.engine, iteration.labeler, options=labeler_options, stage="evaluate/judge"
                )
            ),
            [for_labeling(i) for i in instructions],
            sampling=sampling,
            divide_method=how.method,
            divider=divider,
            seed=cfg["seed"],
            seeding=cfg["seeding"],
            batch_size=cfg["generate_batch"],
            progress=job.progress,
        )
        details["heldout"] = hallucination_rates(answers)
        for key in ("claim_hallucination_rate", "answer_hallucination_rate"):
            result[key] = details["heldout"][key]
        details["shape"] = answer_shapes(answers)
        for key in ("repetition_share", "mean_repeated_claims", "mean_distinct_claims", "mean_words"):
            result[key] = details["shape"][key]
        truth = {i.pk: i.objects_present for i in instructions if i.objects_present is not None}
        if truth:
            details["truth"] = truth_scores(answers, truth)
            for key in ("chair_s", "chair_i", "count_chair_s", "count_chair_i", "recall", "labeler_accuracy"):
                result[f"truth_{key}"] = details["truth"][key]
        if cfg.get("coco_instances") or cfg.get("coco_captions"):
            details["chair"] = _chair(cfg, instructions, answers)
            result |= {key: details["chair"][key] for key in ("chair_s", "chair_i")}
            result["object_recall"] = details["chair"]["recall"]
        # Into the checkpoint this iteration wrote (under MODELS_DIR); a starting policy's folder is not ours to
        # write, so its answers go under VAR_DIR.
        if trained:
            answers_file = Path(model_folder(model)) / "heldout_answers.jsonl"
            details["answers_file"] = f"{model}/heldout_answers.jsonl"
        else:
            details["answers_file"] = f"evaluations/iteration-{iteration.number}-baseline.jsonl"
            answers_file = Path(settings.VAR_DIR) / details["answers_file"]
            answers_file.parent.mkdir(parents=True, exist_ok=True)
        with answers_file.open("w", encoding="utf-8") as out:
            for answer in answers:
                row = {"instruction": answer.instruction_id, "answer": answer.text, "accepted": answer.accepted}
                out.write(json.dumps(row | {"split_failed": answer.failure}, ensure_ascii=False) + "\n")
    if benchmarks:
        figures, more = run_benchmarks(job, model, cfg, offset=len(instructions))
        result |= figures
        details |= more
    return result
