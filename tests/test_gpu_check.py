"""bench/gpu_check.py's comparisons, run on CPU with the transformers engine on both sides (no GPU, no vLLM here)."""

import pytest

from bench.gpu_check import IMAGES, TOLERANCE, check_family, compare_yes_no, dpo_step, main, table
from labeling.backends.base import YesNo
from labeling.backends.transformers_backend import TransformersBackend
from labeling.sample_images import save_sample_images


def test_it_exits_with_a_clear_message_without_cuda(capsys):
    assert main([]) == 2

    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_yes_no_within_the_tolerance_and_with_the_same_clear_verdicts_pass():
    reference = [YesNo(0.6, 0.3), YesNo(0.2, 0.7), YesNo(0.40, 0.41)]

    close = compare_yes_no(reference, [YesNo(0.61, 0.29), YesNo(0.2, 0.71), YesNo(0.42, 0.40)])
    far = compare_yes_no(reference, [YesNo(0.6, 0.3), YesNo(0.2, 0.7), YesNo(0.40, 0.45)])
    flipped = compare_yes_no([YesNo(0.50, 0.44)], [YesNo(0.48, 0.46 + TOLERANCE)])

    assert close == {"max_diff": pytest.approx(0.02), "agree": 2, "clear": 2, "ok": True}  # the unclear one flips
    assert far["ok"] is False and far["max_diff"] == pytest.approx(0.04)
    assert flipped["ok"] is False and (flipped["agree"], flipped["clear"]) == (0, 1)
    with pytest.raises(ValueError, match="3 reference verdicts but 2"):
        compare_yes_no(reference, reference[:2])


@pytest.mark.slow
def test_a_family_checks_out_against_itself_on_cpu(tiny_models_dir, tmp_path):
    """The whole row on Qwen2-VL (M-RoPE, dynamic resolution), one batch size against another, DPO in fp32."""
    path = tiny_models_dir / "tiny-qwen2-vl"
    images = save_sample_images(tmp_path / "images", IMAGES)
    reference, candidate = TransformersBackend(path), TransformersBackend(path, batch_size=1)

    row = check_family(
        "tiny-qwen2-vl", reference, candidate, images, lambda: dpo_step(path, images, tmp_path, bf16=False)
    )

    assert row["result"] == "ok", row
    agree, clear = row["verdicts agree"].split("/")
    assert float(row["yes/no max |ΔP|"]) < 1e-5 and agree == clear
    assert row["seeds reproduce"] == "yes"
    lines = table([row]).splitlines()
    assert lines[0].startswith("family") and lines[2].startswith("tiny-qwen2-vl")
