"""One whole labeling pass without the web app: generate → divide → conquer → combine, in memory.

The web app runs the same four library calls chunk by chunk on Celery workers; this module is the plain
version, for the command line (`python -m labeling run`) and as the baseline the pipeline benchmark
compares the orchestrated run with.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labeling.backends.base import Backend, Sampling
from labeling.batching import batched
from labeling.combine import ScoredResponse, make_pairs
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer, divide
from labeling.generate import PAPER_SAMPLING, Candidate, Instruction, generate_candidates


@dataclass(frozen=True)
class ClaimRecord:
    instruction_id: int | str
    seed: int
    index: int
    text: str
    question: str
    divided_by: str  # the divide method
    image: Path


@dataclass
class Run:
    """Everything one pass produced, as plain data."""

    responses: list[Candidate] = field(default_factory=list)
    failures: dict[tuple, str] = field(default_factory=dict)  # (instruction_id, seed) → why dividing failed
    claims: list[ClaimRecord] = field(default_factory=list)
    verdicts: list[tuple[float, float, bool]] = field(default_factory=list)  # per claim: p_yes, p_no, accepted
    pairs: list = field(default_factory=list)
    dedup_share: float = 0.0


def run_pipeline(
    instructions: Sequence[Instruction],
    policy: Backend,
    labeler: Backend,
    divide_method: str = "rule",
    divider: Backend | None = None,
    n: int = 10,
    sampling: Sampling = PAPER_SAMPLING,
    seed: int = 0,
    k: int = 2,
    batch: int = 8,
    progress: Callable = lambda iterable, **_: iterable,
) -> Run:
    """Run the four steps; `progress` wraps each stage's loop (e.g. tqdm) to show how far it got."""
    run = Run()
    chunks = list(batched(instructions, batch))
    for chunk in progress(chunks, desc="generate", unit="batch"):
        run.responses += generate_candidates(policy, chunk, n=n, sampling=sampling, base_seed=seed)

    by_id = {i.id: i for i in instructions}
    items = [QuestionAnswer(by_id[r.instruction_id].question, r.text) for r in run.responses]
    results = []
    for chunk in progress(list(batched(items, 256)), desc="divide", unit="batch"):
        results += divide(chunk, divide_method, divider)
    for response, result in zip(run.responses, results, strict=True):
        key = (response.instruction_id, response.seed)
        if not result.ok:
            run.failures[key] = result.failure
            continue
        image = Path(by_id[response.instruction_id].image)
        run.claims += [
            ClaimRecord(*key, index, c.text, c.question, result.method, image) for index, c in enumerate(result.claims)
        ]

    unique = 0
    for chunk in progress(list(batched(run.claims, 512)), desc="conquer", unit="batch"):
        verdicts, stats = label_claims(labeler, chunk)
        run.verdicts += [(v.p_yes, v.p_no, v.accepted) for v in verdicts]
        unique += stats.unique
    run.dedup_share = 1 - unique / len(run.claims) if run.claims else 0.0

    rejected: dict[tuple, int] = {}
    for claim, (_, _, accepted) in zip(run.claims, run.verdicts, strict=True):
        key = (claim.instruction_id, claim.seed)
        rejected[key] = rejected.get(key, 0) + (not accepted)
    scored = [
        ScoredResponse(
            (r.instruction_id, r.seed), r.instruction_id, r.text, rejected.get((r.instruction_id, r.seed), 0)
        )
        for r in run.responses
        if (r.instruction_id, r.seed) not in run.failures
    ]
    run.pairs = list(progress(make_pairs(scored, k=k, seed=seed), desc="combine", unit="pair"))
    return run


def write_run(run: Run, out: Path) -> dict[str, Path]:
    """Write responses, claims, verdicts and pairs as JSONL files under `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    failures = run.failures
    rows = {
        "responses": [
            asdict(r) | {"status": "split_failed" if (r.instruction_id, r.seed) in failures else "labeled",
                         "error": failures.get((r.instruction_id, r.seed), "")}
            for r in run.responses
        ],
        "claims": [asdict(c) | {"image": str(c.image)} for c in run.claims],
        "verdicts": [
            {"instruction_id": c.instruction_id, "seed": c.seed, "index": c.index, "p_yes": y, "p_no": no,
             "accepted": a}
            for c, (y, no, a) in zip(run.claims, run.verdicts, strict=True)
        ],
        "pairs": [
            {"instruction_id": p.instruction_id, "chosen_seed": p.chosen_id[1], "rejected_seed": p.rejected_id[1],
             "score_gap": p.score_gap}
            for p in run.pairs
        ],
    }  # fmt: skip
    paths = {}
    for name, records in rows.items():
        paths[name] = out / f"{name}.jsonl"
        with paths[name].open("w") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths
