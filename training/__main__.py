"""Training and evaluation commands; plain Python, no web app needed.

# DPO on exported pairs (the paper's settings by default; every DPOSettings field is an option)
python -m training dpo --pairs var/pairs-1 --policy var/models/tiny-llava --out var/checkpoints/it1
python -m training dpo --pairs pairs.parquet --policy POLICY --out DIR --lora --merge-lora
accelerate launch --multi_gpu --num_processes 8 -m training dpo --pairs ... --policy ... --out ...

# merge a saved LoRA adapter into its base model
python -m training merge --adapter DIR --out MERGED

# CHAIR (Object HalBench) of answers in JSONL ({"image_id": 42, "answer": "..."} per line)
python -m training chair --answers answers.jsonl --instances instances_{train,val}2014.json \\
    --captions captions_{train,val}2014.json

# AMBER of responses in its authors' format ([{"id": 1, "response": "..."}, ...]) against its data folder
python -m training amber --responses responses.json --data AMBER/data

# MMHal-Bench: an OpenAI-compatible judge rates response_template.json's `model_answer`s
python -m training mmhal --responses responses.json --judge-model gpt-4-0314 --base-url https://api.openai.com/v1

# the shapes world's trained labeler and policy (committed weights; --retrain trains them, minutes on a CPU)
python -m training shapes-models --out var/models --evaluate
python -m training shapes-models --out var/models --retrain --evaluate
# world 2's labelers, policy and second generator (committed weights; --retrain [NAME ...]: about an hour on two cores)
python -m training scene-models --out var/models

# best-of-N by the aligned model's self-reward: sample N answers (or score --candidate texts) and rank them
python -m training best-of-n --policy ALIGNED --reference BASE --image cat.png --question "Describe the image." --n 8
"""

import argparse
import json
import sys
import traceback
import types
from dataclasses import MISSING, fields
from typing import get_type_hints

from training.dpo import DPOSettings, progress_line


def _optional(cast):
    return lambda text: None if text.lower() in ("none", "null") else cast(text)


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field, typed from the annotation, with the field's help; booleans get --x / --no-x."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        kind = hints[f.name]
        optional = isinstance(kind, types.UnionType)
        base = next(t for t in kind.__args__ if t is not type(None)) if optional else kind
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        else:
            cast = _optional(base) if optional else base
            parser.add_argument(flag, type=cast, default=default, help=f.metadata["help"])


def run_dpo(args) -> None:
    from training.dpo import train_dpo

    settings = DPOSettings(**{f.name: getattr(args, f.name) for f in fields(DPOSettings)})
    train_dpo(args.pairs, args.policy, args.out, settings, report=lambda r: print(progress_line(r), flush=True))


def run_merge(args) -> None:
    from training.dpo import merge_adapter

    merge_adapter(args.adapter, args.out)
    print(f"merged {args.adapter} into {args.out}")


def run_chair(args) -> None:
    from training.chair import chair, load_ground_truth

    answers = [json.loads(line) for line in open(args.answers, encoding="utf-8") if line.strip()]
    pairs = [(int(a["image_id"]), a.get("answer", a.get("text", ""))) for a in answers]
    truth = load_ground_truth(args.instances, args.captions, image_ids={image_id for image_id, _ in pairs})
    print(json.dumps(chair(pairs, truth.objects).summary(), indent=2))


def run_amber(args) -> None:
    from training.amber import amber_scores, load_amber

    responses = json.loads(open(args.responses, encoding="utf-8").read())
    print(json.dumps(amber_scores(responses, load_amber(args.data)), indent=2))


def run_mmhal(args) -> None:
    from labeling.backends.openai_backend import OpenAIBackend
    from training.mmhal import judge, load_questions

    questions = load_questions(args.responses)
    judge_backend = OpenAIBackend(args.judge_model, args.base_url, api_key=args.api_key)
    result = judge(judge_backend, questions, [record.get("model_answer") or "" for record in questions])
    print(json.dumps(result, indent=2, ensure_ascii=False))


def run_best_of_n(args) -> None:
    from training.self_reward import best_of_n_sampled, load_models

    models = load_models(args.policy, args.reference)
    result = best_of_n_sampled(
        models,
        args.image,
        args.question,
        n=args.n,
        beta=args.beta,
        candidates=args.candidate,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
    )
    print(json.dumps(result, indent=2, ensure_ascii=False))


def run_shapes_models(args) -> None:
    from training.shapes_models import build_shapes_models

    result = build_shapes_models(
        args.out,
        seed=args.seed,
        retrain=args.retrain,
        evaluate=args.evaluate,
        validation_images=args.validation_images,
        save_weights=args.save_weights,
        report=lambda record: print(json.dumps(record), flush=True),
    )
    print(json.dumps({"paths": {k: str(v) for k, v in result["paths"].items()}, "seconds": result["seconds"]}))


def run_scene_models(args) -> None:
    from training.scene_models import build_scene_models

    build_scene_models(
        args.out,
        retrain=True if args.retrain == [] else args.retrain,
        save_weights=args.save_weights,
        evaluate=args.evaluate,
        report=lambda record: print(json.dumps(record) if isinstance(record, dict) else record, flush=True),
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    dpo = sub.add_parser("dpo", help="DPO on TRL vision-preference rows")
    dpo.add_argument("--pairs", required=True, help="datasets folder, .parquet or .jsonl of TRL rows")
    dpo.add_argument("--policy", required=True, help="checkpoint folder of the model to train")
    dpo.add_argument("--out", required=True, help="folder for the trained checkpoint (or LoRA adapter)")
    add_dataclass_options(dpo, DPOSettings)
    dpo.set_defaults(run=run_dpo)

    merge = sub.add_parser("merge", help="merge a LoRA adapter into its base model")
    merge.add_argument("--adapter", required=True)
    merge.add_argument("--out", required=True)
    merge.set_defaults(run=run_merge)

    chair = sub.add_parser("chair", help="CHAIRs / CHAIRi of answers against COCO ground truth")
    chair.add_argument("--answers", required=True, help='JSONL: {"image_id": int, "answer": str} per line')
    chair.add_argument("--instances", required=True, nargs="+", help="COCO instances JSON (train and val: both)")
    chair.add_argument("--captions", required=True, nargs="+", help="COCO captions JSON (train and val: both)")
    chair.set_defaults(run=run_chair)

    amber = sub.add_parser("amber", help="AMBER's generative and discriminative figures of responses")
    amber.add_argument("--responses", required=True, help='JSON: [{"id": int, "response": str}, ...]')
    amber.add_argument("--data", required=True, help="AMBER's data folder (annotations.json, relation.json, ...)")
    amber.set_defaults(run=run_amber)

    mmhal = sub.add_parser("mmhal", help="MMHal-Bench: a judge LLM rates the answers")
    mmhal.add_argument("--responses", required=True, help="response_template.json with each model_answer filled")
    mmhal.add_argument("--judge-model", required=True, help="the judge's model name on the server")
    mmhal.add_argument("--base-url", required=True, help="an OpenAI-compatible server, e.g. https://api.openai.com/v1")
    mmhal.add_argument("--api-key", default=None, help="default: OPENAI_API_KEY")
    mmhal.set_defaults(run=run_mmhal)

    shapes = sub.add_parser("shapes-models", help="write the shapes world's trained labeler and policy")
    shapes.add_argument("--out", required=True, help="models folder; shapes-labeler and shapes-policy go in it")
    shapes.add_argument("--seed", type=int, default=0, help="seed of the models' training and of the evaluation")
    shapes.add_argument("--retrain", action="store_true", help="train from scratch instead of the committed weights")
    shapes.add_argument("--evaluate", action="store_true", help="measure both models on held-out images")
    shapes.add_argument("--validation-images", type=int, default=1000, help="validation images for --evaluate")
    shapes.add_argument("--save-weights", action="store_true", help="with --retrain: replace the committed weights")
    shapes.set_defaults(run=run_shapes_models)

    scene = sub.add_parser("scene-models", help="write world 2's labelers, policy and second generator")
    scene.add_argument(
        "--out", required=True, help="models folder; scenes-labeler, -labeler-long, -policy and -chatty go in it"
    )
    scene.add_argument(
        "--retrain",
        nargs="*",
        metavar="NAME",
        help="train these models (all if none is named) from scratch instead of the committed weights",
    )
    scene.add_argument("--save-weights", action="store_true", help="with --retrain: replace the committed weights")
    scene.add_argument("--evaluate", action="store_true", help="measure the models on 300 validation pictures")
    scene.set_defaults(run=run_scene_models)

    best = sub.add_parser("best-of-n", help="rank answers by the aligned model's length-normalised implicit reward")
    best.add_argument("--policy", required=True, help="the DPO-aligned checkpoint")
    best.add_argument("--reference", required=True, help="the checkpoint it was trained from")
    best.add_argument("--image", required=True)
    best.add_argument("--question", required=True)
    best.add_argument("--n", type=int, default=8, help="answers to sample (ignored with --candidate)")
    best.add_argument("--candidate", action="append", help="score this answer instead of sampling (repeatable)")
    best.add_argument("--beta", type=float, default=0.1, help="the β the policy was trained with")
    best.add_argument("--temperature", type=float, default=0.7)
    best.add_argument("--max-new-tokens", type=int, default=512)
    best.set_defaults(run=run_best_of_n)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    try:
        args.run(args)
    except Exception as exc:
        # The traceback, then the error on one line: the last line is what a caller shows (the web app does).
        traceback.print_exc()
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
