"""bench/gpu_check.py: its comparisons and arithmetic, and the whole check at tiny sizes on the CPU (no GPU here)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.gpu_check import (
    PAPER_SCALE,
    TOLERANCE,
    compare_yes_no,
    full_dpo_gib,
    iteration_estimate,
    main,
    parse_figures,
    yes_share,
)
from labeling.backends.base import YesNo
from labeling.tiny_models import FAMILIES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_it_exits_with_a_clear_message_without_cuda(capsys):
    assert main([]) == 2

    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_it_refuses_real_sizes_on_a_cpu(capsys):
    assert main(["--device", "cpu"]) == 2

    assert "on a CPU pass --tiny" in capsys.readouterr().err


def test_the_yes_share_is_what_the_verdict_reads():
    assert yes_share(YesNo(0.003, 0.001)) == pytest.approx(0.75)
    assert yes_share(YesNo(0.0, 0.0)) == 0.5 and not YesNo(0.0, 0.0).accepted


def test_shares_within_the_tolerance_pass_and_a_flipped_clear_verdict_fails():
    reference = [YesNo(0.6, 0.3), YesNo(0.002, 0.007), YesNo(0.40, 0.41)]

    close = compare_yes_no(reference, [YesNo(0.61, 0.29), YesNo(0.0021, 0.0069), YesNo(0.41, 0.40)])
    far = compare_yes_no(reference, [YesNo(0.6, 0.3), YesNo(0.002, 0.007), YesNo(0.30, 0.50)])
    flipped = compare_yes_no([YesNo(0.56, 0.44)], [YesNo(0.44, 0.56)], tolerance=0.05)

    assert close["ok"] and (close["agree"], close["clear"]) == (2, 2)  # the unclear third one flips, allowed
    assert close["max_diff"] == pytest.approx(abs(yes_share(YesNo(0.41, 0.40)) - yes_share(YesNo(0.40, 0.41))))
    assert not far["ok"] and far["max_diff"] > TOLERANCE
    assert not flipped["ok"] and (flipped["agree"], flipped["clear"]) == (0, 1)
    with pytest.raises(ValueError, match="3 reference verdicts but 2"):
        compare_yes_no(reference, reference[:2])


def test_an_iteration_is_its_answers_claims_and_pairs_over_the_measured_rates():
    hours = iteration_estimate(answers_per_s=10, claims_per_s=100, pairs_per_s=1)

    answers = PAPER_SCALE["instructions"] * PAPER_SCALE["answers"]
    assert hours["generate_h"] == pytest.approx(answers / 10 / 3600)  # 40k answers: 1.1 h
    assert hours["label_h"] == pytest.approx(answers * 8 / 100 / 3600)
    assert hours["dpo_h"] == pytest.approx(4000 * 2 * 4 / 3600)  # two pairs an instruction, 4 epochs
    assert hours["iteration_h"] == pytest.approx(hours["generate_h"] + hours["label_h"] + hours["dpo_h"])
    assert hours["data_collection_4_iterations_h"] == pytest.approx(8.0)


def test_full_fine_tuning_of_a_7b_model_needs_more_than_one_h100():
    needed = full_dpo_gib(params=7_063_427_072, frozen=303_507_456)  # LLaVA-1.5-7B, its CLIP tower frozen

    assert needed == pytest.approx((8 * 7_063_427_072 + 12 * 6_759_919_616) / 2**30)
    assert 80 < needed < 140


def test_the_figures_are_the_name_value_lines_at_the_end():
    text = "table | x\nnote: not a figure line here?\n\nengine: transformers\na.b_c-d: 1.5\nresult: ok\n"

    assert parse_figures(text) == {"engine": "transformers", "a.b_c-d": "1.5", "result": "ok"}
    assert parse_figures("no figures\n") == {}


@pytest.mark.slow
def test_the_whole_check_runs_at_tiny_sizes_on_a_cpu():
    """Every family and both shapes models bf16 against fp32, both architectures' stand-ins measured, estimates."""
    result = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    figures = parse_figures(result.stdout)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert figures["engine"] == "transformers" and figures["device"] == "cpu" and figures["result"] == "ok"
    for family in [*FAMILIES, "shapes-labeler", "shapes-policy"]:
        assert figures[f"{family}.result"] == "ok"
        assert float(figures[f"{family}.max_share_diff"]) <= TOLERANCE
        agree, clear = figures[f"{family}.verdicts_agree"].split("/")
        assert agree == clear
        assert figures[f"{family}.seeds_repeat"] == "yes"
    assert int(figures["shapes-labeler.verdicts_agree"].split("/")[1]) > 0  # trained: its verdicts are clear
    for name in ["llava-1.5-7b", "qwen2-vl-7b"]:
        for key in ["params_b", "generate_per_s", "label_per_s", "dpo_lora_pairs_per_s", "dpo_full_pairs_per_s"]:
            assert float(figures[f"{name}.{key}"]) > 0, key
        assert figures[f"{name}.dpo_lora_peak_gib"] == "n/a"  # GPU memory only on a GPU
        parts = [float(figures[f"{name}.estimate_{stage}_h"]) for stage in ["generate", "label", "dpo"]]
        assert float(figures[f"{name}.estimate_iteration_h"]) == pytest.approx(sum(parts), rel=1e-3)
    assert figures["paper_data_collection_4_iterations_h_8xA100"] == "48"
