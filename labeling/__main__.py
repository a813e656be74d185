"""Run the labeling pipeline from the command line, without the web app.

Usage:
    python -m labeling run --instructions FILE.jsonl --images DIR --policy PATH --labeler PATH \
        [--splitter rule|PATH] [--n 10] [--max-new-tokens 512] --out DIR

FILE.jsonl holds one object a line: `image` (relative to DIR) and `question`. Writes responses, claims,
verdicts and pairs as JSONL under --out, with a progress bar per stage.
"""

import argparse
import json
import sys
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labeling", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="generate, divide, conquer and combine over a JSONL of instructions")
    run.add_argument("--instructions", type=Path, required=True)
    run.add_argument("--images", type=Path, required=True)
    run.add_argument("--policy", required=True, help="policy model path (or hub id)")
    run.add_argument("--labeler", required=True, help="labeler model path (or hub id)")
    run.add_argument("--splitter", default="rule", help="'rule', or the path of the divide LLM (rlaifv prompts)")
    run.add_argument("--engine", default="transformers", choices=["transformers", "vllm", "openai"])
    run.add_argument("--base-url", help="server URL for --engine openai")
    run.add_argument("--device", default="cpu", help="torch device for --engine transformers")
    run.add_argument("--n", type=int, default=10)
    run.add_argument("--temperature", type=float, default=0.7)
    run.add_argument("--max-new-tokens", type=int, default=512)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--pairs-per-instruction", type=int, default=2)
    run.add_argument("--out", type=Path, required=True)
    return parser


def read_instructions(path: Path, images: Path):
    from labeling.generate import Instruction

    instructions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, question = images / record["image"], record["question"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SystemExit(
                f"{path}: line {number}: needs a JSON object with 'image' and 'question' ({exc})"
            ) from None
        if not image.is_file():
            raise SystemExit(f"{path}: line {number}: image file not found: {image}")
        instructions.append(Instruction(number, image, question))
    if not instructions:
        raise SystemExit(f"{path}: no instructions")
    return instructions


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    from tqdm import tqdm

    from labeling.backends import load_backend
    from labeling.backends.base import Sampling
    from labeling.pipeline import run_pipeline, write_run

    instructions = read_instructions(args.instructions, args.images)
    options = {"device": args.device} if args.engine == "transformers" else {}
    if args.engine == "openai":
        options = {"base_url": args.base_url}
    policy = load_backend(args.engine, args.policy, **options)
    labeler = policy if args.labeler == args.policy else load_backend(args.engine, args.labeler, **options)
    divider = None
    if args.splitter != "rule":
        divider = load_backend(args.engine, args.policy, text_model=args.splitter, **options)
    run = run_pipeline(
        instructions,
        policy,
        labeler,
        divide_method="rule" if args.splitter == "rule" else "rlaifv",
        divider=divider,
        n=args.n,
        sampling=Sampling(temperature=args.temperature, max_new_tokens=args.max_new_tokens),
        seed=args.seed,
        k=args.pairs_per_instruction,
        progress=lambda iterable, **kw: tqdm(iterable, **kw),
    )
    for name, path in write_run(run, args.out).items():
        print(f"{name}: {path}")
    print(f"{len(run.responses)} responses ({len(run.failures)} split failures), {len(run.claims)} claims "
          f"({run.dedup_share:.0%} of labeler queries saved by dedup), {len(run.pairs)} pairs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
