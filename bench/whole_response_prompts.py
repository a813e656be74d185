"""How the shapes labeler fares with whole-response questions, by wording: why `whole_response` asks what it asks.

Usage:
    .venv/bin/python bench/whole_response_prompts.py [--images 300] [--samples 2]

The shapes labeler (training/shapes_models.py) was trained on one-object questions ("Is it true that there is a
red circle? Please answer yes or no."). The whole-response strategy asks it about whole answers instead. This
samples the base policy's answers to held-out pictures (temperature 0.7) and asks the labeler, with each wording
below, whether each answer is true (every object it names is in the picture), through the transformers backend.
Prints per wording the words the labeler's tokenizer does not know, its accuracy against the truth (overall and
by the number of objects the answer names), the share it accepts, and the AUROC of its p_yes.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from labeling.conquer import labeler_prompt  # noqa: E402
from labeling.shapes import description_is_true, mentioned_objects  # noqa: E402
from labeling.whole_response import whole_response_question  # noqa: E402

WORDINGS = {
    "whole_response (ours)": lambda question, answer: whole_response_question(answer),
    "description accurate": lambda question, answer: f"Is this description of the image accurate? {answer}",
    "question, answer, is it true": lambda question, answer: f"{question} {answer} Is it true?",
    "answer, is it true": lambda question, answer: f"{answer} Is it true?",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300, help="held-out pictures")
    parser.add_argument("--samples", type=int, default=2, help="answers per picture")
    args = parser.parse_args()

    from labeling.backends import load_backend
    from labeling.backends.base import GenerationRequest, PolarQuery, Sampling
    from training import shapes_models

    with tempfile.TemporaryDirectory(prefix="bench-whole-") as tmp:
        paths = shapes_models.build_shapes_models(Path(tmp) / "models", report=lambda record: None)["paths"]
        rows = shapes_models.heldout_rows(Path(tmp) / "world", args.images)
        policy = load_backend("transformers", str(paths[shapes_models.POLICY]))
        labeler = load_backend("transformers", str(paths[shapes_models.LABELER]))
        requests = [GenerationRequest(Path(r["image"]), r["question"], tuple(range(args.samples))) for r in rows]
        texts = policy.generate(requests, Sampling(temperature=0.7, max_new_tokens=40))
        answers = [(row, text) for row, samples in zip(rows, texts, strict=True) for text in samples]
        answers = [(row, text) for row, text in answers if description_is_true(text, row["objects"]) is not None]
        truths = [description_is_true(text, row["objects"]) for row, text in answers]
        tokenizer = shapes_models.build_processor_for_shapes().tokenizer
        print(f"{len(answers)} answers naming an object, {sum(truths) / len(truths):.3f} of them true")
        print(f"{'wording':<30} {'unknown words':>13} {'accuracy':>8} {'accepts':>7} {'AUROC':>6}  "
              "accuracy by objects named")  # fmt: skip
        for name, wording in WORDINGS.items():
            prompts = [labeler_prompt(wording(row["question"], text)) for row, text in answers]
            verdicts = labeler.yes_no(
                [PolarQuery(Path(row["image"]), p) for (row, _), p in zip(answers, prompts, strict=True)]
            )
            p_yes = [v.p_yes / (v.p_yes + v.p_no) if v.p_yes + v.p_no > 0 else 0.5 for v in verdicts]
            right = [v.accepted == truth for v, truth in zip(verdicts, truths, strict=True)]
            unknown = tokenizer(prompts[0])["input_ids"].count(tokenizer.unk_token_id)
            by_count: dict[int, list[bool]] = {}
            for (_, text), correct in zip(answers, right, strict=True):
                by_count.setdefault(min(len(mentioned_objects(text)), 4), []).append(correct)
            split = ", ".join(f"{k}{'+' if k == 4 else ''}: {sum(v) / len(v):.2f}" for k, v in sorted(by_count.items()))
            accepts = sum(v.accepted for v in verdicts) / len(verdicts)
            print(f"{name:<30} {unknown:>13} {sum(right) / len(right):8.3f} {accepts:7.3f} "
                  f"{shapes_models.auroc(p_yes, truths):6.3f}  {split}")  # fmt: skip


if __name__ == "__main__":
    main()
