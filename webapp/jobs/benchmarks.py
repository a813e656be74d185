"""The paper's benchmarks an evaluation runs beside the held-out set, when the iteration's config names their files.

AMBER (training.amber): config `amber_data` (AMBER's `data` folder: annotations.json, relation.json, safe_words.txt,
query/), `amber_images` (the folder of AMBER_*.jpg) and optionally `amber_queries` (which query file: "all", the
default, "generative", "discriminative", "discriminative-existence", ...). MMHal-Bench (training.mmhal): config
`mmhal_data` (the folder of response_template.json and images/) and `mmhal_judge` (the judge's model name on the
OpenAI-compatible server at JUDGE_BASE_URL). Paths are under DATA_DIR. The figures plotted across iterations go to
the evaluation's top level (`amber_chair`, `mmhal_score`, ...), the rest to its details; the answers are written
beside the held-out ones in the benchmarks' own formats (AMBER's responses file; MMHal-Bench's template with each
`model_answer` and the judge's reply), so the authors' scripts can score them again.
"""

import json
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from labeling.backends.base import Backend, Sampling
from webapp.iterations.config import engine_options
from webapp.jobs.engines import OnFirstUse, backend_for
from webapp.models import Iteration, Job
from webapp.places import data_file, model_folder

AMBER_KEYS = ("amber_data", "amber_images")
MMHAL_KEYS = ("mmhal_data", "mmhal_judge")
AMBER_QUERIES = (
    "all",
    "generative",
    "discriminative",
    "discriminative-existence",
    "discriminative-attribute",
    "discriminative-relation",
)
# What each benchmark's details put at the evaluation's top level: (group, figure) -> key.
AMBER_FIGURES = {
    ("generative", "chair"): "amber_chair",
    ("generative", "cover"): "amber_cover",
    ("generative", "hal"): "amber_hal",
    ("generative", "cog"): "amber_cog",
    ("all", "accuracy"): "amber_accuracy",
    ("all", "f1"): "amber_f1",
    ("existence", "f1"): "amber_existence_f1",
    ("attribute", "f1"): "amber_attribute_f1",
    ("relation", "f1"): "amber_relation_f1",
}


def wanted(cfg: dict) -> list[str]:
    """The benchmarks the config asks for; a half-given one is an error that names what is missing."""
    names = []
    for name, keys in (("AMBER", AMBER_KEYS), ("MMHal-Bench", MMHAL_KEYS)):
        given = [key for key in keys if cfg.get(key)]
        if given and len(given) < len(keys):
            missing = ", ".join(key for key in keys if key not in given)
            raise ValueError(f"{name} needs config {missing} too")
        if given:
            names.append(name)
    if cfg.get("amber_queries", "all") not in AMBER_QUERIES:
        raise ValueError(f"amber_queries must be one of {', '.join(AMBER_QUERIES)}, not {cfg['amber_queries']!r}")
    return names


def amber_queries(cfg: dict) -> list[dict]:
    from training.amber import load_queries

    name = cfg.get("amber_queries", "all")
    return load_queries(data_file(cfg["amber_data"], "amber_data") / "query" / f"query_{name}.json")


def run_amber(cfg: dict, policy: Backend, sampling: Sampling, progress: Callable[[int], None]) -> tuple[dict, dict]:
    """(top-level figures, details) of AMBER for the policy."""
    from training.amber import amber_scores, answer_queries, load_amber

    data = load_amber(data_file(cfg["amber_data"], "amber_data"))
    images = data_file(cfg["amber_images"], "amber_images")
    rows = answer_queries(
        policy, amber_queries(cfg), images, data, sampling, cfg["seed"], cfg["generate_batch"], progress
    )
    scores = amber_scores(rows, data)
    figures = {key: scores[group][name] for (group, name), key in AMBER_FIGURES.items() if group in scores}
    return figures, scores | {"queries": cfg.get("amber_queries", "all"), "responses": rows}


def mmhal_questions(cfg: dict) -> list[dict]:
    from training.mmhal import load_questions

    return load_questions(data_file(cfg["mmhal_data"], "mmhal_data") / "response_template.json")


def run_mmhal(cfg: dict, policy: Backend, sampling: Sampling, progress: Callable[[int], None]) -> tuple[dict, dict]:
    """(top-level figures, details) of MMHal-Bench: the policy answers, the configured judge rates."""
    from labeling.backends.openai_backend import OpenAIBackend
    from training.mmhal import answer_questions, judge

    questions = mmhal_questions(cfg)
    answers = answer_questions(policy, questions, sampling, cfg["seed"], cfg["generate_batch"], progress)
    judge_backend = OpenAIBackend(cfg["mmhal_judge"], settings.JUDGE_BASE_URL, api_key=settings.JUDGE_API_KEY)
    result = judge(judge_backend, questions, answers)
    figures = {"mmhal_score": result["score"], "mmhal_hallucination_rate": result["hallucination_rate"]}
    judged = result.pop("judged")
    responses = [
        {k: v for k, v in record.items() if k != "image"} | {"model_answer": row["answer"], "judge_reply": row["reply"]}
        for record, row in zip(questions, judged, strict=True)
    ]
    return figures, result | {"judge": cfg["mmhal_judge"], "responses": responses}


def question_count(cfg: dict) -> int:
    """How many answers the configured benchmarks ask of the policy (the job's progress total)."""
    names = wanted(cfg)
    return (len(amber_queries(cfg)) if "AMBER" in names else 0) + (
        len(mmhal_questions(cfg)) if "MMHal-Bench" in names else 0
    )


def benchmark_sampling(cfg: dict) -> Sampling:
    """Greedy (or `eval_temperature`), one beam: how LLaVA-RLHF answers MMHal-Bench (AMBER leaves it to the user)."""
    return Sampling(
        temperature=cfg.get("eval_temperature", 0.0),
        max_new_tokens=cfg.get("eval_max_new_tokens", cfg["max_new_tokens"]),
    )


def run_benchmarks(job: Job, model: str, cfg: dict, offset: int) -> tuple[dict, dict]:
    """`model` (the iteration's policy or its checkpoint) on every benchmark the config asks for: (top-level
    figures, {"amber": ..., "mmhal": ...} details); progress counts on from `offset` (the held-out answers)."""
    iteration = job.iteration
    trained = model != iteration.policy
    # A checkpoint is a local folder even when the iteration's models are served (openai)
    engine = "transformers" if trained and iteration.engine == Iteration.Engine.OPENAI else iteration.engine
    options = engine_options(iteration, "policy", engine)
    policy = OnFirstUse(lambda: backend_for(engine, model, options=options, stage="evaluate/answer"))

    def place(key: str) -> tuple[Path, str]:
        """Into the checkpoint this iteration wrote; a starting policy's folder is not ours: under VAR_DIR."""
        if trained:
            return Path(model_folder(model)) / f"{key}_answers.json", f"{model}/{key}_answers.json"
        label = f"evaluations/iteration-{iteration.number}-baseline-{key}.json"
        (Path(settings.VAR_DIR) / label).parent.mkdir(parents=True, exist_ok=True)
        return Path(settings.VAR_DIR) / label, label

    return answer_benchmarks(cfg, policy, benchmark_sampling(cfg), lambda n: job.progress(offset + n), place)


def answer_benchmarks(
    cfg: dict,
    policy: Backend,
    sampling: Sampling,
    progress: Callable[[int], None],
    place: Callable[[str], tuple[Path, str]],
) -> tuple[dict, dict]:
    """Every benchmark the config asks for: (top-level figures, details). `place(key)` says where a benchmark's
    answers go: (file, its name in the details)."""
    figures: dict = {}
    details: dict = {}
    done = 0
    for name, run, key in (("AMBER", run_amber, "amber"), ("MMHal-Bench", run_mmhal, "mmhal")):
        if name in wanted(cfg):
            offset = done
            own, result = run(cfg, policy, sampling, lambda n, offset=offset: progress(offset + n))
            responses = result.pop("responses")
            path, label = place(key)
            path.write_text(json.dumps(responses, indent=2, ensure_ascii=False), encoding="utf-8")
            figures |= own
            details[key] = result | {"answers_file": label}
            done += len(responses)
    return figures, details
