"""`python -m labeling run`: the whole pipeline without the web app, on the tiny models and real photos."""

import json
import subprocess
import sys

import pytest

from labeling.__main__ import main
from labeling.sample_images import save_sample_images


@pytest.fixture
def instructions(tmp_path):
    paths = save_sample_images(tmp_path / "images", ["astronaut", "coffee", "chelsea"])
    lines = [json.dumps({"image": p.name, "question": "Describe this image in detail."}) for p in paths]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_it_runs_end_to_end_and_says_where_it_wrote(instructions, tiny_models_dir, capsys):
    model = str(tiny_models_dir / "tiny-llava")
    out = instructions / "out"
    args = ["run", "--instructions", str(instructions / "in.jsonl"), "--images", str(instructions / "images"),
            "--policy", model, "--labeler", model, "--n", "4", "--max-new-tokens", "20", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ["responses", "claims", "verdicts", "pairs"]:
        assert f"{name}: {out / (name + '.jsonl')}" in printed
    responses, claims, verdicts, pairs = (
        read(out / f"{n}.jsonl") for n in ["responses", "claims", "verdicts", "pairs"]
    )
    assert len(responses) == 12 and all(
        len({r["seed"] for r in responses if r["instruction_id"] == i}) == 4 for i in (1, 2, 3)
    )
    assert len({r["seed"] for r in responses}) == 12  # no two instructions share a random stream
    assert len(verdicts) == len(claims) > 0
    assert all(v["accepted"] == (v["p_yes"] > v["p_no"]) for v in verdicts)
    assert all(p["score_gap"] >= 1 for p in pairs)
    assert max(sum(p["instruction_id"] == i for p in pairs) for i in (1, 2, 3)) <= 2
    assert main(args) == 0  # same seeds, same models: the same files again
    assert read(out / "responses.jsonl") == responses and read(out / "pairs.jsonl") == pairs


def test_a_bad_line_is_named(instructions, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"image": "astronaut.png", "question": "Q?"}\n{"question": "Q?"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "labeling", "run", "--instructions", str(tmp_path / "bad.jsonl"), "--images",
         str(instructions / "images"), "--policy", "x", "--labeler", "x", "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "bad.jsonl: line 2: needs a JSON object with 'image' and 'question'" in result.stderr
