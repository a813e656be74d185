"""bench/gpu_iteration.py on a CPU machine: it says what it needs and exits; its figures' logic (per-stage
throughput, memory peaks by stage, the estimate's error) is checked here on made-up jobs and samples."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.gpu_iteration import eta_errors, missing_gpu_stack, peaks_by_stage, stage_throughput

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_each_stage_counts_its_items_over_its_wall_time():
    jobs = [("generate", 16, at(0), at(30)), ("generate", 16, at(10), at(40)), ("label", 900, at(50), at(80))]
    assert stage_throughput(jobs) == {
        "generate": {"items": 32, "seconds": 40.0, "per_second": 0.8},
        "label": {"items": 900, "seconds": 30.0, "per_second": 30.0},
    }


def test_memory_peaks_are_taken_within_each_stage():
    samples = [(at(5), 10), (at(20), 30), (at(45), 70), (at(60), 50), (at(90), 99)]
    spans = {"generate": (at(0), at(40)), "label": (at(50), at(80)), "train": (at(100), at(110))}
    assert peaks_by_stage(samples, spans) == {"generate": 30, "label": 50, "train": 0}


def test_the_estimates_error_is_per_stage_and_over_the_iteration():
    errors = eta_errors({"generate": 120, "label": 50, "train": 30}, {"generate": 100, "label": 100})
    assert errors == {"generate": pytest.approx(0.2), "label": pytest.approx(-0.5), "iteration": pytest.approx(-0.15)}
    assert eta_errors({}, {"generate": 100}) == {}


@pytest.mark.skipif(missing_gpu_stack() is None, reason="this machine can run the bench itself")
def test_without_cuda_and_vllm_it_says_so_and_exits():
    result = subprocess.run([sys.executable, "bench/gpu_iteration.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("bench/gpu_iteration.py needs a GPU machine: vLLM is not installed")
