"""The models on a GPU with the transformers engine: bf16 against fp32, seeds, real-size throughput and memory.

Usage:
    python bench/gpu_check.py                       # on one CUDA GPU; sized for under 8 minutes on an H100
    python bench/gpu_check.py --device cpu --tiny   # the same steps at tiny sizes on a CPU (a test runs it)
    python bench/gpu_check.py --engine vllm [--models DIR ...] [--gpu-share 0.4]   # where vLLM is installed

1. Every family of `labeling.tiny_models.FAMILIES` on its tiny checkpoint, and the shapes world's trained
   models (`training.shapes_models`): the engine in bf16 on the device against fp32 on the CPU, yes/no on
   3 images × 4 questions (the yes-share P(yes) / (P(yes) + P(no)) within TOLERANCE, the same verdict where
   fp32's is clear); seeded generation gives the same texts asked again (and whether it does with other
   requests in the batch, which bf16 does not promise); one DPO step of `training.dpo.train_dpo` (bf16 on a
   GPU) changes the weights.
2. Real sizes with random weights (`bench/gpu_models.py`: LLaVA-1.5-7B and Qwen2-VL-7B built from their
   configs; `--tiny` takes their tiny stand-ins): answers/s at n = 10, claims/s with one image prefix per
   image, one DPO step with LoRA and one with full fine-tuning (or, where it cannot fit, the memory it
   needs), each with its peak GPU memory.
3. From those, one paper-scale iteration on this one GPU (4k instructions × 10 answers × ~8 claims, DPO for
   4 epochs), beside the paper's 48 h of data collection on 8×A100 for four iterations.

Prints a table of the families, then its figures last as `name: value` lines (`parse_figures` reads them).
Exits 0 when every check passes, 1 when one fails, 2 when this machine cannot run it (no CUDA without
`--device cpu`, no vLLM for `--engine vllm`, real sizes on a CPU). With `--engine vllm` only part 1 runs, the
vLLM engine against the transformers engine, both bf16 on the GPU.
"""

import argparse
import gc
import math
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo  # noqa: E402
from labeling.tiny_models import FAMILIES  # noqa: E402

# Allowed |Δ| of the yes-share s = P(yes) / (P(yes) + P(no)), bf16 against fp32 (or two bf16 engines). The verdict
# is s > 1/2, and s = sigmoid(z_yes − z_no) moves by at most a quarter of the logits' difference's error
# (ds/dz = s(1 − s) ≤ 1/4), so it is read where it is most sensitive, whatever the absolute P: random tiny
# models put P(yes) + P(no) near 2/vocabulary, where |ΔP| says nothing. bf16 keeps 8 significant bits (2^-9 ≈
# 0.2 % per rounding); on these models its logits' difference moved by ≤ 0.02, so s by ≤ 0.005 (bf16 against
# fp32 on a CPU, every family). 0.02 leaves four times that for the GPU's kernels and is still well under the
# spread of s over questions (0.1 to 0.35), which a wrong image, cache, mask or position would move. A verdict can
# only flip where |s − 1/2| ≤ the difference, so the clear ones (beyond TOLERANCE) must agree.
TOLERANCE = 0.02
QUESTIONS = [
    "Is there a man in the image?",
    "Is there a red cup on the table?",
    "Does the image show a rocket?",
    "Is the sky blue?",
]
IMAGE_SIZES = [(640, 480), (480, 640), (512, 512), (600, 400)]  # landscape, portrait, square: tiles and tokens differ
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16)
COLUMNS = ["family", "max_share_diff", "verdicts_agree", "seeds_repeat", "seeds_batch_invariant", "dpo_loss", "result"]
N_ANSWERS = 10  # the paper samples 10 answers per instruction
# One paper-scale iteration (RLAIF-V): 4k instructions, 10 answers each, ~8 claims an answer, at most two pairs
# per instruction (as `training.shapes_models.ITERATION_CONFIG` takes from the paper), DPO for 4 epochs.
PAPER_SCALE = {"instructions": 4000, "answers": 10, "claims": 8, "pairs_per_instruction": 2, "epochs": 4}
PAPER_DATA_COLLECTION_H = 48  # the paper's data collection for four iterations, on 8×A100
FIGURE = re.compile(r"^([\w.\-]+): (\S.*)$")


# --- inputs --------------------------------------------------------------------------------------------


def make_images(folder: Path, sizes=IMAGE_SIZES, seed: int = 0) -> list[Path]:
    """Shapes-world scenes scaled to `sizes`, as PNG files (no image library beyond Pillow travels to a GPU)."""
    from labeling import shapes

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for width, height in sizes:
        path = folder / f"scene-{width}x{height}.png"
        shapes.draw(shapes.random_scene(rng)).resize((width, height)).save(path)
        paths.append(path)
    return paths


def queries(images: Sequence[Path], questions: Sequence[str] = QUESTIONS) -> list[PolarQuery]:
    return [PolarQuery(image, f"{q} Please answer yes or no.") for image in images for q in questions]


def claims(images: Sequence[Path], per_image: int) -> list[PolarQuery]:
    """`per_image` distinct labeler prompts about each image, as the conquer step sends them."""
    from labeling.conquer import labeler_prompt
    from labeling.tiny_vocab import COCO_CLASSES

    pairs = [f"{a} and a {b}" for a in COCO_CLASSES for b in COCO_CLASSES if a != b][:per_image]
    return [
        PolarQuery(image, labeler_prompt(f"Is it true that there is a {obj}?")) for image in images for obj in pairs
    ]


# --- bf16 against fp32, seeds ------------------------------------------------------------------------


def yes_share(answer: YesNo) -> float:
    """P(yes) / (P(yes) + P(no)): the verdict is whether it exceeds 1/2 (1/2 when an engine saw neither)."""
    total = answer.p_yes + answer.p_no
    return answer.p_yes / total if total > 0 else 0.5


def compare_yes_no(reference: Sequence[YesNo], other: Sequence[YesNo], tolerance: float = TOLERANCE) -> dict:
    """The largest |Δ| of the yes-share, and the verdicts' agreement where the reference's is clear."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference verdicts but {len(other)} to compare")
    pairs = list(zip(reference, other, strict=True))
    diff = max(abs(yes_share(a) - yes_share(b)) for a, b in pairs)
    clear = [(a, b) for a, b in pairs if abs(yes_share(a) - 0.5) > tolerance]
    agree = sum(a.accepted == b.accepted for a, b in clear)
    return {"max_diff": diff, "agree": agree, "clear": len(clear), "ok": diff <= tolerance and agree == len(clear)}


def seeds_reproduce(engine, images: Sequence[Path], sampling: Sampling = SAMPLING) -> dict:
    """Whether the same seeds give the same texts asked again (`repeat`), and with other requests in the batch
    (`batch_invariant`: exact in float32; in bf16 another batch's padding changes the rounding, so not required)."""
    target = GenerationRequest(images[1], "Describe the image.", seeds=(7, 3, 11))
    others = [
        GenerationRequest(images[0], "What is the man wearing on his head?", seeds=(7, 1)),
        GenerationRequest(images[2], "What is written on the page?", seeds=(5,)),
    ]
    alone = engine.generate([target], sampling)[0]
    again = engine.generate([target], sampling)[0]
    mixed = engine.generate([others[0], target, others[1]], sampling)[1]
    return {"repeat": alone == again, "batch_invariant": alone == mixed}


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


def check_family(
    name: str, reference, candidate, images: Sequence[Path], dpo: Callable[[], dict], questions=QUESTIONS
) -> dict:
    """One table row: `candidate`'s yes/no against `reference`'s, its seeds, and the DPO step."""
    yes_no = compare_yes_no(reference.yes_no(queries(images, questions)), candidate.yes_no(queries(images, questions)))
    seeds = seeds_reproduce(candidate, images)
    trained = dpo()
    return {
        "family": name,
        "max_share_diff": f"{yes_no['max_diff']:.2g}",
        "verdicts_agree": f"{yes_no['agree']}/{yes_no['clear']}",
        "seeds_repeat": "yes" if seeds["repeat"] else "NO",
        "seeds_batch_invariant": "yes" if seeds["batch_invariant"] else "no",
        "dpo_loss": f"{trained['loss']:.4f}" + ("" if trained["changed"] else "(weights-unchanged)"),
        "result": "ok" if yes_no["ok"] and seeds["repeat"] and trained["ok"] else "FAILED",
    }


def table(rows: Sequence[dict]) -> str:
    """A plain text table, one line per row, columns as wide as their widest cell."""
    widths = [max(len(column), *(len(str(row.get(column, ""))) for row in rows)) for column in COLUMNS]
    lines = [" | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(row.get(c, "")).ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def family_targets(work: Path, families: Sequence[str]) -> dict[str, tuple[Path, Sequence[Path], Sequence[str]]]:
    """name -> (checkpoint, images, questions): the tiny families on scenes of several sizes, the shapes
    models on their own 64 px world and its questions (they know no other words)."""
    from labeling import shapes
    from labeling.tiny_models import build_tiny_models
    from training.shapes_models import build_shapes_models

    images = make_images(work / "images", IMAGE_SIZES[:3])
    paths = build_tiny_models(work / "models")
    targets = {name: (paths[name], images, QUESTIONS) for name in families}
    world = make_images(work / "shapes-images", [(shapes.IMAGE_PX, shapes.IMAGE_PX)] * 3)
    questions = [shapes.object_question(name) for name in shapes.OBJECTS[::3]]
    built = build_shapes_models(work / "models", report=lambda record: None)
    return targets | {name: (path, world, questions) for name, path in built["paths"].items()}


# --- real sizes ----------------------------------------------------------------------------------------


def peak_gib(device: str) -> float | None:
    """The GPU memory allocated at most since the last reset, in GiB (None on a CPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def reset_peak(device: str) -> None:
    """Free what the last stage left (a trainer holds its model in reference cycles), then restart the peak."""
    import torch

    if device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def throughput(backend, images: Sequence[Path], device: str, answer_tokens: int, claims_per_image: int) -> dict:
    """Answers/s at n = 10 (all images' answers in one batch) and claims/s, each after a warm-up call."""
    import torch

    sampling = Sampling(temperature=0.7, top_p=1.0, max_new_tokens=answer_tokens)
    requests = [GenerationRequest(image, "Describe the image in detail.", tuple(range(N_ANSWERS))) for image in images]
    backend.generate(requests[:1], Sampling(max_new_tokens=2))
    figures = {}
    for stage, run, items in [
        ("generate", lambda: backend.generate(requests, sampling), len(requests) * N_ANSWERS),
        ("label", lambda: backend.yes_no(claims(images, claims_per_image)), len(images) * claims_per_image),
    ]:
        if stage == "label":
            backend.yes_no(claims(images[:1], 2))
        reset_peak(device)
        start = time.perf_counter()
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        figures[f"{stage}_per_s"] = items / (time.perf_counter() - start)
        figures[f"{stage}_peak_gib"] = peak_gib(device)
    return figures


def answer(rng: random.Random, words: int) -> str:
    from labeling.tiny_vocab import COCO_CLASSES

    return "There is a " + " and a ".join(rng.choice(COCO_CLASSES) for _ in range(words // 3)) + "."


def dpo_throughput(policy: Path, images: Sequence[Path], out: Path, device: str, lora: bool, words: int) -> dict:
    """Two DPO steps of two pairs each (answers of about `words` tokens); pairs/s from the second step's time
    (the first pays for warm-up), the loss, and the peak GPU memory."""
    from labeling.formats import RlaifvRecord, write_trl_dataset
    from training.dpo import DPOSettings, train_dpo

    rng = random.Random(0)
    pairs = [
        RlaifvRecord(image.read_bytes(), "Describe the image in detail.", answer(rng, words), answer(rng, words))
        for image in images[:4]
    ]
    write_trl_dataset(pairs, out / "pairs")
    settings = DPOSettings(
        max_steps=2,
        global_batch_size=2,
        warmup_ratio=0.0,
        lora=lora,
        bf16=device == "cuda",
        gradient_checkpointing=True,
    )
    times = []
    reset_peak(device)
    record = train_dpo(
        out / "pairs", policy, out / "checkpoint", settings,
        report=lambda r: times.append(time.perf_counter()) if r["event"] == "log" and "loss" in r else None,
    )  # fmt: skip
    return {
        "pairs_per_s": settings.global_batch_size / (times[1] - times[0]),
        "loss": record["loss"],
        "peak_gib": peak_gib(device),
    }


def full_dpo_gib(params: int, frozen: int) -> float:
    """GPU memory full-fine-tuning DPO needs at least, before activations: float32 weights of the policy and of
    TRL's reference copy (4 + 4 bytes a parameter) and gradients and Adam's two moments for every trained one
    (12 bytes; the vision tower is frozen)."""
    return (8 * params + 12 * (params - frozen)) / 2**30


def real_size(name: str, work: Path, device: str, tiny: bool) -> dict:
    """Build architecture `name` with random weights, then measure generation, labelling and the DPO steps."""
    import torch

    from bench.gpu_models import build_random_checkpoint
    from labeling.backends.transformers_backend import TransformersBackend

    path = work / name
    images = make_images(work / "images", IMAGE_SIZES)
    counts = build_random_checkpoint(name, path, device, tiny)
    figures = {"params_b": counts["params"] / 1e9}
    answer_tokens, claims_per_image = (8, 16) if tiny else (128, N_ANSWERS * PAPER_SCALE["claims"])
    backend = TransformersBackend(
        path,
        device=device,
        dtype=torch.bfloat16,
        batch_size=len(images) * N_ANSWERS,
        device_map="cuda" if device == "cuda" else None,  # load straight onto the GPU, no copy in host memory
    )
    figures |= throughput(backend, images, device, answer_tokens, claims_per_image)
    del backend
    lora = dpo_throughput(path, images, work / f"{name}-lora", device, lora=True, words=answer_tokens)
    figures |= {f"dpo_lora_{key}": value for key, value in lora.items()}
    needed = full_dpo_gib(counts["params"], counts["frozen_params"])
    figures["dpo_full_needs_gib"] = needed
    total = torch.cuda.get_device_properties(0).total_memory / 2**30 if device == "cuda" else math.inf
    if needed * 1.15 > total:  # activations and the allocator's slack take the rest
        figures["dpo_full"] = f"does not fit: needs at least {needed:.0f} GiB, the GPU has {total:.0f} GiB"
    else:
        try:
            full = dpo_throughput(path, images, work / f"{name}-full", device, lora=False, words=answer_tokens)
            figures |= {f"dpo_full_{key}": value for key, value in full.items()}
        except torch.OutOfMemoryError:
            figures["dpo_full"] = f"out of GPU memory (estimated need {needed:.0f} GiB of {total:.0f})"
    figures["answer_tokens"] = answer_tokens
    return figures


def iteration_estimate(answers_per_s: float, claims_per_s: float, pairs_per_s: float, scale=PAPER_SCALE) -> dict:
    """Hours of one iteration at `scale` on one GPU: generating, labelling, DPO; and four iterations' data
    collection (generating and labelling), the paper's 48 h on 8×A100 figure. The divide step is not counted."""
    answers = scale["instructions"] * scale["answers"]
    hours = {
        "generate_h": answers / answers_per_s / 3600,
        "label_h": answers * scale["claims"] / claims_per_s / 3600,
        "dpo_h": scale["instructions"] * scale["pairs_per_instruction"] * scale["epochs"] / pairs_per_s / 3600,
    }
    hours["iteration_h"] = sum(hours.values())
    hours["data_collection_4_iterations_h"] = 4 * (hours["generate_h"] + hours["label_h"])
    return hours


# --- output --------------------------------------------------------------------------------------------


def format_value(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def error_text(error: Exception) -> str:
    """An error as one short line, so it stays one `name: value` line."""
    return " ".join(f"ERROR {type(error).__name__}: {error}".split())[:200]


def parse_figures(text: str) -> dict[str, str]:
    """The `name: value` lines at the end of the check's output, in order."""
    figures = []
    for line in reversed(text.rstrip("\n").splitlines()):
        match = FIGURE.match(line)
        if not match:
            break
        figures.append(match.groups())
    return dict(reversed(figures))


def missing_requirement(device: str, engine: str, tiny: bool) -> str | None:
    """Why this machine cannot run the check as asked, or None."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "gpu_check needs a CUDA GPU; this machine has none (on a CPU: --device cpu --tiny)."
    if engine == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            return (
                "--engine vllm needs vLLM: install requirements-gpu.txt (docker/Dockerfile.gpu does) on a GPU machine."
            )
        if device != "cuda":
            return "--engine vllm runs on CUDA only."
    if device == "cpu" and not tiny:
        return "real sizes need a GPU; on a CPU pass --tiny."
    return None


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny stand-ins of the real-size architectures")
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--models", type=Path, nargs="+", help="checkpoint folders to check instead of the tiny ones")
    parser.add_argument("--real", nargs="*", default=["llava-1.5-7b", "qwen2-vl-7b"], help="real-size architectures")
    parser.add_argument("--gpu-share", type=float, default=0.1, help="share of GPU memory per vLLM engine")
    parser.add_argument("--work", type=Path, help="folder for checkpoints (default: a temporary one)")
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    problem = missing_requirement(args.device, args.engine, args.tiny)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    import torch

    from labeling.backends.transformers_backend import TransformersBackend

    began = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    if args.models:
        images = make_images(work / "images", IMAGE_SIZES[:3])
        targets = {path.name: (path, images, QUESTIONS) for path in args.models}
    else:
        targets = family_targets(work, args.families)
    rows = []
    for name, (path, images, questions) in targets.items():
        try:
            if args.engine == "vllm":
                from labeling.backends.vllm_backend import VLLMBackend

                reference = TransformersBackend(path, device="cuda", dtype=torch.bfloat16)
                candidate = VLLMBackend(
                    str(path), dtype="bfloat16", gpu_memory_utilization=args.gpu_share, enforce_eager=True,
                    max_model_len=4096,
                )  # fmt: skip
            else:
                reference = TransformersBackend(path)  # float32 on the CPU
                candidate = TransformersBackend(path, device=args.device, dtype=torch.bfloat16)
            train = partial(dpo_step, path, images, work / name, bf16=args.device == "cuda", lora=bool(args.models))
            rows.append(check_family(name, reference, candidate, images, train, questions))
        except Exception as error:  # one family's failure is a row of the table, not the end of the check
            rows.append({"family": name, "result": error_text(error)})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    figures = {"engine": args.engine, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"}
    figures |= {"torch": torch.__version__, "tolerance": TOLERANCE}
    for row in rows:
        figures |= {f"{row['family']}.{key}": value for key, value in row.items() if key != "family"}
    ok = all(row["result"] == "ok" for row in rows)
    if args.engine == "transformers":
        for name in args.real:
            try:
                measured = real_size(name, work, args.device, args.tiny)
            except Exception as error:  # e.g. out of memory: the figures of the others still count
                measured, ok = {"result": error_text(error)}, False
            figures |= {f"{name}.{key}": value for key, value in measured.items()}
            if "dpo_lora_pairs_per_s" in measured:
                estimate = iteration_estimate(
                    measured["generate_per_s"], measured["label_per_s"], measured["dpo_lora_pairs_per_s"]
                )
                figures |= {f"{name}.estimate_{key}": value for key, value in estimate.items()}
        figures["paper_data_collection_4_iterations_h_8xA100"] = PAPER_DATA_COLLECTION_H
    figures["wall_s"] = time.perf_counter() - began
    figures["result"] = "ok" if ok else "FAILED"
    print(f"\ntolerance {TOLERANCE} on P(yes) / (P(yes) + P(no)); bf16 on {args.device} against the reference\n")
    print(table(rows))
    print("\nEstimates use the LoRA DPO step and a labeler of the policy's size; the divide step is not counted.")
    for name, value in figures.items():
        print(f"{name}: {format_value(value)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
