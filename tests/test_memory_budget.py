"""Memory discipline of a GPU worker: across a whole iteration, its engines never hold more than its budget, an
engine is shut down before the next stage's model loads, and DPO's child starts with nothing loaded.

The engines are fakes that take their memory from a fake GPU when they load and give it back when they are shut
down (a real one needs CUDA); the pool, the engine options and the roles each stage loads are the real ones.
"""

import pytest

from labeling.engine_options import GIB, check_options, memory_estimate
from labeling.engine_pool import EnginePool, MemoryBudgetError
from tests.factories import IterationFactory
from webapp.iterations.config import engine_options, models_of
from webapp.jobs import engines
from webapp.models import JobKind

STAGES = [JobKind.GENERATE, JobKind.DIVIDE, JobKind.LABEL, JobKind.COMBINE, JobKind.TRAIN, JobKind.EVALUATE]
EVALUATE_PHASES = {"policy": "answer", "splitter": "divide", "labeler": "judge"}  # webapp.jobs.train_evaluate


class FakeGPU:
    """Memory in use, its peak, and every load and shutdown in order."""

    def __init__(self, capacity: int):
        self.capacity, self.used, self.peak, self.events = capacity, 0, 0, []

    def take(self, name: str, size: int):
        self.used += size
        self.peak = max(self.peak, self.used)
        assert self.used <= self.capacity, f"{name} took the GPU to {self.used / GIB:.0f} GiB"
        self.events.append(("load", name))

    def give_back(self, name: str, size: int):
        self.used -= size
        self.events.append(("shutdown", name))


class FakeEngine:
    """An engine that reports the memory it holds, from loading until `shutdown`."""

    def __init__(self, gpu: FakeGPU, name: str, size: int):
        self.gpu, self.name, self.size, self.running = gpu, name, size, True
        gpu.take(name, size)

    def memory_bytes(self) -> int:
        return self.size if self.running else 0

    def shutdown(self):
        self.running = False
        self.gpu.give_back(self.name, self.size)


def paper_iteration(**config):
    """The paper's models as vLLM sees them: a 7B policy on one GPU, a 34B labeler on four, an 8B splitter."""
    options = {
        "policy": {"memory_gb": 20},
        "labeler": {"tensor_parallel_size": 4, "memory_gb": 280},
        "splitter": {"memory_gb": 24},
    }
    return IterationFactory(
        policy="llava-1.5-7b", labeler="llava-next-34b", splitter="llama-3-8b", engine="vllm",
        config={"engine_options": options} | config,
    )  # fmt: skip


def run_iteration(pool: EnginePool, gpu: FakeGPU, iteration) -> tuple:
    """Ask the pool for every model each stage loads (webapp.iterations.config.models_of), chunk after chunk, as the job
    bodies do; evaluate's phases (answer, divide, judge) each load on first use; train releases everything
    before DPO's child process would start. Returns what was held when that child started."""
    held_at_train = None
    for kind in STAGES:
        if kind == JobKind.TRAIN:
            pool.release()
            held_at_train = (gpu.used, list(pool.loaded))
            continue
        for _chunk in range(1 if kind == JobKind.EVALUATE else 3):  # evaluate: one whole-iteration job
            for role, model in models_of(iteration, kind):
                stage = f"evaluate/{EVALUATE_PHASES[role]}" if kind == JobKind.EVALUATE else kind
                size = memory_estimate(iteration.engine, engine_options(iteration, role), model, gpu_bytes=0)
                engine = pool.get(model, stage, size, lambda m=model, s=size: FakeEngine(gpu, m, s))
                assert engine.running
                assert gpu.used == pool.used <= (pool.budget or gpu.capacity)
    return held_at_train


def loads(gpu: FakeGPU) -> list[str]:
    return [name for event, name in gpu.events if event == "load"]


@pytest.mark.django_db
def test_it_holds_one_stage_at_a_time_and_never_exceeds_its_budget():
    gpu = FakeGPU(capacity=8 * 141 * GIB)
    pool = EnginePool(budget=300 * GIB)

    held_at_train = run_iteration(pool, gpu, paper_iteration())

    assert gpu.peak <= 300 * GIB
    assert held_at_train == (0, [])  # DPO's child starts on GPUs with nothing else loaded
    # Each model loads once per stage (not per chunk). The splitter joins the policy (20 + 24 GiB fit); the
    # labeler's 280 do not fit beside them, so both are shut down before it loads, in generate's order.
    assert loads(gpu) == ["llava-1.5-7b", "llama-3-8b", "llava-next-34b"] * 2
    first_label = gpu.events.index(("load", "llava-next-34b"))
    assert gpu.events[first_label - 2 : first_label] == [("shutdown", "llava-1.5-7b"), ("shutdown", "llama-3-8b")]


@pytest.mark.django_db
def test_without_a_budget_each_stage_loads_on_an_empty_gpu():
    gpu = FakeGPU(capacity=8 * 141 * GIB)
    pool = EnginePool(budget=None)

    run_iteration(pool, gpu, paper_iteration())

    assert gpu.peak == 280 * GIB  # the labeler alone: no two stages' models were ever loaded together
    after = [gpu.events[i - 1][0] for i, (event, _) in enumerate(gpu.events) if event == "load" and i]
    assert after and set(after) == {"shutdown"}  # every model after the first loaded on a freed GPU


@pytest.mark.django_db
def test_a_stage_whose_models_cannot_fit_together_is_refused_naming_them():
    """Two 34B labelers judge every claim in one stage: 560 GiB cannot fit a 300 GiB budget."""
    pool = EnginePool(budget=300 * GIB)
    gpu = FakeGPU(capacity=8 * 141 * GIB)

    with pytest.raises(MemoryBudgetError, match=r"llava-next-34b-b \(280.0 GiB\) for label .* 300.0 GiB"):
        run_iteration(pool, gpu, paper_iteration(second_labeler="llava-next-34b-b"))
    assert gpu.peak <= 300 * GIB


def test_a_model_alone_over_the_budget_is_refused_before_it_loads():
    pool = EnginePool(budget=10 * GIB)
    gpu = FakeGPU(capacity=80 * GIB)

    with pytest.raises(MemoryBudgetError, match="over its budget of 10.0 GiB"):
        pool.get("big", "label", 68 * GIB, lambda: FakeEngine(gpu, "big", 68 * GIB))
    assert gpu.events == []


def test_what_an_engine_reports_holding_counts_over_its_estimate():
    """Estimated at 10 GiB, the engine holds 50: the next stage's 20 GiB do not fit beside it in 60."""
    pool = EnginePool(budget=60 * GIB)
    gpu = FakeGPU(capacity=60 * GIB)
    pool.get("policy", "generate", 10 * GIB, lambda: FakeEngine(gpu, "policy", 50 * GIB))

    pool.get("labeler", "label", 20 * GIB, lambda: FakeEngine(gpu, "labeler", 20 * GIB))

    assert gpu.events == [("load", "policy"), ("shutdown", "policy"), ("load", "labeler")]
    assert pool.used == gpu.used == 20 * GIB


def test_vllm_takes_its_share_of_every_gpu_it_spans():
    options = check_options("vllm", {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.5})

    assert memory_estimate("vllm", options, "llava-next-34b", gpu_bytes=80 * GIB) == 160 * GIB
    assert memory_estimate("vllm", {}, "llava-1.5-7b", gpu_bytes=80 * GIB) == 72 * GIB  # vLLM's default share, 0.9


@pytest.mark.django_db
def test_the_workers_pool_shuts_engines_down_when_models_are_released(settings):
    """webapp.jobs.engines' own pool: what `train` calls before starting DPO's child."""
    settings.GPU_MEMORY_BUDGET_GB = None
    gpu = FakeGPU(capacity=80 * GIB)
    engine = engines.POOL.get("policy", "generate", 14 * GIB, lambda: FakeEngine(gpu, "policy", 14 * GIB))
    try:
        engines.release_models()
        assert not engine.running and gpu.used == 0 and engines.POOL.loaded == {}
    finally:
        engines.POOL.release()
