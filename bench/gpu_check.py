"""The model families on a GPU: the vLLM engine against the transformers engine, and DPO in bf16.

Usage (on a GPU worker, in its environment: requirements-gpu.txt or docker/Dockerfile.gpu):
    python bench/gpu_check.py [--families tiny-qwen2-vl tiny-gemma3 ...]
    python bench/gpu_check.py --models $MODELS_DIR/Qwen2-VL-7B-Instruct ... --gpu-share 0.4

For every family of `labeling.tiny_models.FAMILIES` (all of them run on vLLM), on its tiny checkpoint
(built into a temporary folder), or for each checkpoint folder given with `--models` (real weights, README):
- yes/no: the vLLM engine's P(yes) / P(no) against the transformers engine's, both in bf16, on 3 images × 4
  questions: the largest difference must stay within TOLERANCE, and where the transformers engine's margin
  |P(yes) − P(no)| exceeds 2 × TOLERANCE both must give the same verdict;
- seeded generation on vLLM: the same seeds give the same texts when asked again and when other requests
  share the batch;
- DPO: one step of `training.dpo.train_dpo` on CUDA in bf16 changes the weights (full fine-tuning on the
  tiny checkpoints, a LoRA adapter on real weights under `--models`).
Prints one table row per family and exits 1 if any check fails, 2 without CUDA or vLLM. Under 5 minutes on
one GPU with the tiny checkpoints (each vLLM engine takes `--gpu-share` of the memory, eager mode; real
weights need a share that holds them, e.g. 0.4 for a 7B model).

The comparisons are plain functions over two engines (`compare_yes_no`, `seeds_reproduce`, `check_family`),
which tests/test_gpu_check.py runs on CPU with the transformers engine on both sides.
"""

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo  # noqa: E402
from labeling.sample_images import save_sample_images  # noqa: E402
from labeling.tiny_models import FAMILIES  # noqa: E402

TOLERANCE = 0.02  # |ΔP| between two bf16 engines: bf16 keeps ~3 significant digits of each logit
IMAGES = ["astronaut", "coffee", "page"]  # square, landscape, portrait: different tilings and token counts
QUESTIONS = [
    "Is there a man in the image?",
    "Is there a red cup on the table?",
    "Does the image show a rocket?",
    "Is the sky blue?",
]
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16)
COLUMNS = ["family", "yes/no max |ΔP|", "verdicts agree", "seeds reproduce", "DPO bf16 loss", "result"]


def queries(images: Sequence[Path]) -> list[PolarQuery]:
    return [PolarQuery(image, f"{q} Please answer yes or no.") for image in images for q in QUESTIONS]


def compare_yes_no(reference: Sequence[YesNo], other: Sequence[YesNo], tolerance: float = TOLERANCE) -> dict:
    """The largest |ΔP(yes)|, |ΔP(no)| and the verdicts' agreement where the reference's margin is clear."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference verdicts but {len(other)} to compare")
    diff = max(max(abs(a.p_yes - b.p_yes), abs(a.p_no - b.p_no)) for a, b in zip(reference, other, strict=True))
    clear = [(a, b) for a, b in zip(reference, other, strict=True) if abs(a.p_yes - a.p_no) > 2 * tolerance]
    agree = sum(a.accepted == b.accepted for a, b in clear)
    return {"max_diff": diff, "agree": agree, "clear": len(clear), "ok": diff <= tolerance and agree == len(clear)}


def seeds_reproduce(engine, images: Sequence[Path], sampling: Sampling = SAMPLING) -> bool:
    """The same seeds give the same texts asked again, and with other requests in the batch."""
    target = GenerationRequest(images[1], "Describe the image.", seeds=(7, 3, 11))
    others = [
        GenerationRequest(images[0], "What is the man wearing on his head?", seeds=(7, 1)),
        GenerationRequest(images[2], "What is written on the page?", seeds=(5,)),
    ]
    alone = engine.generate([target], sampling)[0]
    again = engine.generate([target], sampling)[0]
    mixed = engine.generate([others[0], target, others[1]], sampling)[1]
    return alone == again == mixed


def dpo_step(policy: Path, images: Sequence[Path], out: Path, bf16: bool = True, lora: bool = False) -> dict:
    """One DPO step on two pairs (on CUDA where there is one); the loss and whether the trained weights moved."""
    import torch
    from safetensors.torch import load_file

    from labeling.formats import RlaifvRecord, write_trl_dataset
    from training.dpo import DPOSettings, train_dpo

    pairs = [
        RlaifvRecord(images[0].read_bytes(), "What is the person wearing?", "a white suit", "a red dog", "a.png"),
        RlaifvRecord(images[1].read_bytes(), "What is on the table?", "a cup", "a horse and a car", "c.png"),
    ]
    write_trl_dataset(pairs, out / "pairs")
    settings = DPOSettings(
        max_steps=1, global_batch_size=1, warmup_ratio=0.0, learning_rate=1e-3, bf16=bf16, lora=lora, lora_r=8
    )
    record = train_dpo(out / "pairs", policy, out / "checkpoint", settings)
    if lora:  # LoRA's B matrices start at zero: any non-zero one has been trained
        adapter = load_file(out / "checkpoint" / "adapter_model.safetensors")
        changed = any(name.endswith("lora_B.weight") and adapter[name].abs().sum() > 0 for name in adapter)
    else:
        before, after = load_file(policy / "model.safetensors"), load_file(out / "checkpoint" / "model.safetensors")
        changed = any(not torch.equal(before[name], after[name]) for name in before)
    return {"loss": record["loss"], "changed": changed, "ok": changed and math.isfinite(record["loss"])}


def check_family(name: str, reference, candidate, images: Sequence[Path], dpo: Callable[[], dict]) -> dict:
    """One table row: `candidate`'s yes/no against `reference`'s, its seeds, and the DPO step."""
    yes_no = compare_yes_no(reference.yes_no(queries(images)), candidate.yes_no(queries(images)))
    reproduce = seeds_reproduce(candidate, images)
    trained = dpo()
    return {
        "family": name,
        "yes/no max |ΔP|": f"{yes_no['max_diff']:.2g}",
        "verdicts agree": f"{yes_no['agree']}/{yes_no['clear']}",
        "seeds reproduce": "yes" if reproduce else "NO",
        "DPO bf16 loss": f"{trained['loss']:.4f}" + ("" if trained["changed"] else " (weights unchanged)"),
        "result": "ok" if yes_no["ok"] and reproduce and trained["ok"] else "FAILED",
    }


def table(rows: Sequence[dict]) -> str:
    """A plain text table, one line per row, columns as wide as their widest cell."""
    widths = [max(len(column), *(len(str(row.get(column, ""))) for row in rows)) for column in COLUMNS]
    lines = [" | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(row.get(c, "")).ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def missing_requirement() -> str | None:
    """Why this machine cannot run the check, or None."""
    import torch

    if not torch.cuda.is_available():
        return "gpu_check needs a CUDA GPU; this machine has none (run it on a GPU worker)."
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "gpu_check needs vLLM: install requirements-gpu.txt (docker/Dockerfile.gpu does) on the GPU machine."
    return None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", help="checkpoint folders to check instead of the tiny ones")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--gpu-share", type=float, default=0.1, help="share of GPU memory per vLLM engine")
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    problem = missing_requirement()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch

    from labeling.backends.transformers_backend import TransformersBackend
    from labeling.backends.vllm_backend import VLLMBackend
    from labeling.tiny_models import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    if args.models:
        targets = {path.name: path for path in args.models}
    else:
        targets = {name: path for name, path in build_tiny_models(work / "models").items() if name in args.families}
    images = save_sample_images(work / "images", IMAGES)
    rows = []
    for name, path in targets.items():
        try:
            reference = TransformersBackend(path, device="cuda", dtype=torch.bfloat16)
            candidate = VLLMBackend(
                str(path),
                dtype="bfloat16",
                gpu_memory_utilization=args.gpu_share,
                enforce_eager=True,
                max_model_len=4096,
            )
            train = partial(dpo_step, path, images, work / name, lora=args.models is not None)
            rows.append(check_family(name, reference, candidate, images, train))
        except Exception as error:  # one family's failure is a row of the table, not the end of the check
            rows.append({"family": name, "result": f"ERROR {type(error).__name__}: {error}"[:200]})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(f"\ntolerance {TOLERANCE} on P(yes) and P(no); transformers and vLLM both in bf16\n")
    print(table(rows))
    return 0 if all(row["result"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
