"""Self-reward: after DPO on one pair, the implicit reward ranks the chosen answer above the rejected one."""

import io
import json

import pytest

from labeling.formats import RlaifvRecord, write_trl_dataset
from labeling.sample_images import sample_image
from training.__main__ import main
from training.dpo import DPOSettings, train_dpo
from training.self_reward import (
    Rewarded,
    answer_logps,
    best_of_n,
    best_of_n_sampled,
    implicit_rewards,
    load_models,
    reward_pairs,
)

QUESTION = "What is the person wearing?"
CHOSEN, REJECTED = "a white suit and a helmet", "a red dog on the grass"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_models_dir):
    """The tiny LLaVA after 4 DPO steps on one pair; also the step-1 log (the untrained policy's log-probs)."""
    folder = tmp_path_factory.mktemp("self_reward")
    image = io.BytesIO()
    sample_image("astronaut").save(image, "PNG")
    (folder / "astronaut.png").write_bytes(image.getvalue())
    write_trl_dataset([RlaifvRecord(image.getvalue(), QUESTION, CHOSEN, REJECTED)], folder / "pairs")
    settings = DPOSettings(max_steps=4, global_batch_size=1, warmup_ratio=0.0, learning_rate=1e-2)
    logs = []
    train_dpo(folder / "pairs", tiny_models_dir / "tiny-llava", folder / "aligned", settings, report=logs.append)
    first_step = next(r for r in logs if r.get("step") == 1 and "loss" in r)
    return folder, first_step


@pytest.mark.slow
def test_its_log_probs_are_the_ones_dpo_trained_on(trained, tiny_models_dir):
    folder, first_step = trained
    models = load_models(folder / "aligned", tiny_models_dir / "tiny-llava")

    logps, lengths = answer_logps(models.reference, models.processor, sample_image("astronaut"), QUESTION, [CHOSEN])

    assert logps[0].item() == pytest.approx(first_step["logps/chosen"], abs=1e-3)
    assert lengths[0].item() == len(CHOSEN.split()) + 1  # one token per word here, and the end of turn


@pytest.mark.slow
def test_it_ranks_the_answer_the_trained_model_prefers_first(trained, tiny_models_dir):
    folder, _ = trained
    models = load_models(folder / "aligned", tiny_models_dir / "tiny-llava")

    result = best_of_n(models, folder / "astronaut.png", QUESTION, [REJECTED, "a cat", CHOSEN])

    assert result["best"] == CHOSEN
    assert result["ranking"][-1]["answer"] == REJECTED
    rewards = {r["answer"]: r["reward"] for r in result["ranking"]}
    assert rewards[CHOSEN] > 0 > rewards[REJECTED]


@pytest.mark.slow
def test_the_reward_is_zero_against_itself_and_scales_with_beta(trained, tiny_models_dir):
    folder, _ = trained
    same = load_models(tiny_models_dir / "tiny-llava", tiny_models_dir / "tiny-llava")
    aligned = load_models(folder / "aligned", tiny_models_dir / "tiny-llava")
    image = sample_image("astronaut")

    assert implicit_rewards(same, image, QUESTION, [CHOSEN, REJECTED]) == [0.0, 0.0]
    low = implicit_rewards(aligned, image, QUESTION, [CHOSEN, REJECTED], beta=0.1)
    high = implicit_rewards(aligned, image, QUESTION, [CHOSEN, REJECTED], beta=0.2)
    assert high == pytest.approx([2 * r for r in low])
    assert implicit_rewards(aligned, image, QUESTION, [CHOSEN, REJECTED], batch_size=1) == pytest.approx(low)


@pytest.mark.slow
def test_the_best_of_n_command_prints_the_ranking(trained, tiny_models_dir, capsys):
    folder, _ = trained
    options = [f"--policy={folder / 'aligned'}", f"--reference={tiny_models_dir / 'tiny-llava'}"]
    options += [f"--image={folder / 'astronaut.png'}", f"--question={QUESTION}"]

    assert main(["best-of-n", *options, f"--candidate={REJECTED}", f"--candidate={CHOSEN}"]) == 0

    assert json.loads(capsys.readouterr().out)["best"] == CHOSEN


@pytest.mark.slow
def test_best_of_n_samples_n_answers_when_given_none(trained, tiny_models_dir):
    folder, _ = trained
    models = load_models(folder / "aligned", tiny_models_dir / "tiny-llava")

    result = best_of_n_sampled(models, folder / "astronaut.png", QUESTION, n=3, max_new_tokens=6)

    assert len(result["ranking"]) == 3
    assert result["ranking"][0]["reward"] >= result["ranking"][-1]["reward"]


def test_pairs_take_the_best_against_the_worst_then_inwards():
    answers = [Rewarded(i, 1, f"answer {i}", reward) for i, reward in enumerate([0.1, 0.5, -0.2, 0.3, 0.0])]
    answers += [Rewarded(10, 2, "same", 1.0), Rewarded(11, 2, "same", 0.0), Rewarded(12, 3, "alone", 1.0)]
    answers += [Rewarded(20, 4, "tie a", 0.5), Rewarded(21, 4, "tie b", 0.5)]

    pairs = reward_pairs(answers, k=2)

    assert [(chosen.id, rejected.id, gap) for chosen, rejected, gap in pairs] == [(1, 2, 4), (3, 4, 2)]
