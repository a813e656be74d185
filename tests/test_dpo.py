"""DPO with TRL on the tiny LLaVA: a couple of steps on two pairs, then the checkpoint is used as a model."""

import io
import json
import math
from dataclasses import fields

import pytest
import torch
from safetensors.torch import load_file

from labeling.formats import RlaifvRecord, write_trl_dataset, write_trl_jsonl, write_trl_parquet
from labeling.sample_images import sample_image
from training.__main__ import main, make_parser
from training.dpo import RECORD_FILE, DPOSettings, merge_adapter, parse_progress, read_record, train_dpo

pytestmark = pytest.mark.slow
QUICK = {"max_steps": 2, "global_batch_size": 1, "warmup_ratio": 0.0, "learning_rate": 1e-3}
WRITERS = {"dataset": (write_trl_dataset, "pairs"), "parquet": (write_trl_parquet, "pairs.parquet")}


def png(name: str) -> bytes:
    buffer = io.BytesIO()
    sample_image(name).resize((64, 64)).save(buffer, "PNG")
    return buffer.getvalue()


def records() -> list[RlaifvRecord]:
    return [
        RlaifvRecord(png("astronaut"), "What is the person wearing?", "a white suit", "a red dog", "a.png"),
        RlaifvRecord(png("chelsea"), "What animal is in the picture?", "a cat", "a horse and a car", "c.png"),
    ]


@pytest.fixture
def pairs(tmp_path):
    """The two pairs as a `datasets` folder, the format the web app exports for training."""
    write_trl_dataset(records(), tmp_path / "pairs")
    return tmp_path / "pairs"


def generate(path, question="What is in the image?") -> str:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[sample_image("coffee")], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    return processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("fmt", ["dataset", "parquet", "jsonl"])
def test_two_steps_log_a_loss_and_change_the_weights(tmp_path, tiny_models_dir, fmt):
    policy = tiny_models_dir / "tiny-llava"
    if fmt == "jsonl":
        write_trl_jsonl(records(), tmp_path / "pairs.jsonl")
        data = tmp_path / "pairs.jsonl"
    else:
        writer, name = WRITERS[fmt]
        writer(records(), tmp_path / name)
        data = tmp_path / name
    reports = []

    record = train_dpo(data, policy, tmp_path / "out", DPOSettings(**QUICK), report=reports.append)

    losses = [r["loss"] for r in reports if r["event"] == "log" and "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert reports[0] == {"event": "start", "step": 0, "total": 2}
    assert reports[-1]["event"] == "saved"
    assert record["steps"] == 2 and record["pairs"] == 2 and read_record(tmp_path / "out")["loss"] == losses[-1]
    before, after = load_file(policy / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    trained = [name for name in before if "language_model.model.layers." in name or "multi_modal_projector" in name]
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert set(trained) <= set(changed) and not any(name.startswith("vision_tower.") for name in changed)


def test_the_command_prints_progress_and_saves_a_checkpoint_that_generates(tmp_path, tiny_models_dir, pairs, capsys):
    out = tmp_path / "checkpoint"
    options = [f"--pairs={pairs}", f"--out={out}", f"--policy={tiny_models_dir / 'tiny-llava'}"]

    assert main(["dpo", *options, *DPOSettings(**QUICK).cli_args()]) == 0

    progress = [record for line in capsys.readouterr().out.splitlines() if (record := parse_progress(line))]
    logged = [r for r in progress if r["event"] == "log" and "loss" in r]
    assert [(r["step"], r["total"]) for r in logged] == [(1, 2), (2, 2)]
    assert progress[-1] == {"event": "saved", "out": str(out), "pairs": 2, "steps": 2, "loss": logged[-1]["loss"]}
    text = generate(out)
    assert len(text.split()) >= 3


def test_lora_saves_an_adapter_that_reloads_and_merges(tmp_path, tiny_models_dir, pairs):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    policy = tiny_models_dir / "tiny-llava"
    settings = DPOSettings(**(QUICK | {"learning_rate": 1e-2}), lora=True, lora_r=4)

    train_dpo(pairs, policy, tmp_path / "adapter", settings)

    saved = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", RECORD_FILE} <= saved
    assert "model.safetensors" not in saved
    adapted = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(policy), tmp_path / "adapter")
    assert len(generate(tmp_path / "adapter").split()) >= 3  # transformers loads an adapter folder by itself

    merge_adapter(tmp_path / "adapter", tmp_path / "merged")

    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    base = load_file(policy / "model.safetensors")
    weights = load_file(tmp_path / "merged" / "model.safetensors")
    assert any(not torch.equal(base[name], weights[name]) for name in base)
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-5)
    assert json.loads((tmp_path / "merged" / RECORD_FILE).read_text())["settings"]["lora"] is True


def test_lora_can_merge_at_the_end_of_training(tmp_path, tiny_models_dir, pairs):
    train_dpo(pairs, tiny_models_dir / "tiny-llava", tmp_path / "out", DPOSettings(**QUICK, lora=True, merge_lora=True))

    assert (tmp_path / "out" / "model.safetensors").exists()
    assert not (tmp_path / "out" / "adapter_config.json").exists()


def test_the_settings_are_the_papers_and_survive_the_command_line():
    paper = DPOSettings()
    assert (paper.beta, paper.loss_type, paper.lr, paper.lr_scheduler_type) == (0.1, "sigmoid", 5e-7, "cosine")
    assert (paper.warmup_ratio, paper.weight_decay, paper.global_batch_size, paper.epochs) == (0.05, 0.01, 8, 4)
    assert DPOSettings(lora=True).lr == 1e-5
    assert (paper.lora_r, paper.lora_alpha, paper.lora_dropout) == (64, 16, 0.05)

    custom = DPOSettings(beta=0.2, lora=True, merge_lora=True, bf16=False, max_length=2048, epochs=1.5, sft_weight=1)
    args = make_parser().parse_args(["dpo", "--pairs=p", "--policy=m", "--out=o", "--train-vision-tower"])
    assert args.train_vision_tower is True and DPOSettings(train_vision_tower=True).cli_args() == [
        "--train-vision-tower"
    ]
    args = make_parser().parse_args(["dpo", "--pairs=p", "--policy=m", "--out=o", *custom.cli_args()])
    assert DPOSettings(**{f.name: getattr(args, f.name) for f in fields(DPOSettings)}) == custom


def test_the_command_fails_with_the_error_on_its_last_line(tmp_path, pairs, capsys):
    missing = tmp_path / "no-such-model"  # a path, so nothing asks the model hub

    assert main(["dpo", f"--pairs={pairs}", f"--policy={missing}", f"--out={tmp_path / 'out'}"]) == 1

    assert capsys.readouterr().err.splitlines()[-1].startswith(f"OSError: cannot load the policy '{missing}': ")


def test_an_nll_term_on_the_chosen_answers_joins_the_dpo_loss(tmp_path, tiny_models_dir):
    from training.dpo import trl_config

    assert trl_config(DPOSettings(), tmp_path).loss_type == ["sigmoid"]
    config = trl_config(DPOSettings(sft_weight=0.5), tmp_path)
    assert (config.loss_type, config.loss_weights) == (["sigmoid", "sft"], [1.0, 0.5])
    write_trl_jsonl(records(), tmp_path / "pairs.jsonl")
    reports = []
    settings = DPOSettings(**QUICK | {"sft_weight": 1.0})
    policy = tiny_models_dir / "tiny-llava"
    train_dpo(tmp_path / "pairs.jsonl", policy, tmp_path / "out", settings, report=reports.append)
    losses = [r["loss"] for r in reports if r["event"] == "log" and "loss" in r]
    # with the NLL of the chosen answers added, the loss is well above DPO's ln 2 at the start
    assert len(losses) == 2 and losses[0] > math.log(2) + 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="beta=-1"):
        DPOSettings(beta=-1)
    with pytest.raises(ValueError, match="sft_weight=-0.5"):
        DPOSettings(sft_weight=-0.5)
    with pytest.raises(ValueError, match="merge_lora needs lora"):
        DPOSettings(merge_lora=True)
    assert DPOSettings.from_mapping({"beta": 0.5, "n": 10, "temperature": 0.7}).beta == 0.5


@pytest.mark.parametrize("scale", ["sum", "mean"])
def test_the_sft_term_is_the_references_summed_log_prob_or_trls_mean(tmp_path, tiny_models_dir, pairs, scale):
    import torch.nn.functional as F

    from training.dpo import build_trainer, load_pairs

    weight = 0.5
    both = {"per_device_batch_size": 2, "global_batch_size": 2}  # one batch holds both pairs
    settings = DPOSettings(**QUICK | both, sft_weight=weight, sft_scale=scale)
    trainer = build_trainer(load_pairs(pairs), tiny_models_dir / "tiny-llava", tmp_path / "out", settings)
    batch = next(iter(trainer.get_train_dataloader()))

    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
        inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
        mask = batch["completion_mask"][:, 1:]  # the answer tokens, as predicted from the token before each

        def token_logps(model):
            logits = model(**inputs).logits[:, :-1].float()
            return F.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0] * mask

        policy, reference = token_logps(trainer.model), token_logps(trainer.ref_model)
    chosen, rejected = policy.sum(1).chunk(2)
    ref_chosen, ref_rejected = reference.sum(1).chunk(2)
    dpo = -F.logsigmoid(0.1 * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()
    chosen_mask = mask.chunk(2)[0]
    assert chosen_mask.sum(1).tolist()[0] != chosen_mask.sum(1).tolist()[1]  # answers of different lengths
    if scale == "sum":  # the reference: DPO − SFT_weight × mean over the pairs of the summed log-prob
        expected = dpo - weight * chosen.mean()
    else:  # TRL's sft loss: the mean over all the chosen tokens of the batch
        expected = dpo - weight * policy.chunk(2)[0].sum() / chosen_mask.sum()
    assert loss == pytest.approx(expected.item(), rel=1e-4)
    assert (trainer.loss_types, trainer.args.loss_weights) == (["sigmoid", "sft"], [1.0, weight])


def test_the_sft_scale_is_checked():
    assert DPOSettings().sft_scale == "sum"
    with pytest.raises(ValueError, match="sft_scale='median' \\(one of sum, mean\\)"):
        DPOSettings(sft_weight=1, sft_scale="median")
    assert DPOSettings(sft_scale="mean").cli_args() == ["--sft-scale=mean"]
