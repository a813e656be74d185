"""DPO on exported preference pairs with TRL's `DPOTrainer` (docs/DESIGN.md §1, step 5).

The data are TRL vision-preference rows (`images`, `prompt`, `chosen`, `rejected`) as `labeling.formats`
writes them: a `datasets` folder, a parquet file or a JSONL file. The settings default to the paper's: sigmoid
DPO on summed token log-probs, β 0.1, lr 5e-7, cosine with 5% warm-up, weight decay 0.01, global batch 8,
4 epochs, no SFT term (with `sft_weight`, the reference's: the weight times the chosen answer's summed
log-probability, subtracted; `sft_scale: mean` takes TRL's per-token mean instead); bf16 and gradient
checkpointing on a GPU, off on CPU. As in the reference (LLaVA's recipe), the vision tower runs frozen and the
projector and language model train (`train_vision_tower` trains the tower too). With `lora`, an r 64 / α 16 /
dropout 0.05 adapter on the language model's linear layers at lr 1e-5, the projector trained fully beside it
(PEFT's `modules_to_save`); the adapter-disabled policy is then the reference, so it costs no extra memory.
TRL's `disable_dropout` zeroes every dropout module, LoRA's too, so the configured LoRA dropout is put back
once the trainer is built. TRL 1.16 refuses `precompute_ref_log_probs` for vision data, so without LoRA the
reference model runs beside the policy.

Progress goes to a `report(record)` callable; the CLI prints each record as one line, `PROGRESS_PREFIX`
followed by JSON, which is how the web app follows a training that runs in a child process. Records:
`{"event": "start", "step": 0, "total": T}`, then `{"event": "log", "step": s, "total": T, "loss": ...}`
every `logging_steps`, then `{"event": "saved", "out": DIR, ...}`.

This module imports only the standard library at load time (the web app reads the settings and the progress
protocol from it); torch, transformers, TRL and PEFT are imported by the functions that need them.
"""

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from labeling.remote_code import MARKER, is_trusted, trust_remote_code
from training.vlm_parts import language_linear_names, vlm_parts

PROGRESS_PREFIX = "@rlaifv-progress "
RECORD_FILE = "rlaifv_dpo.json"  # written next to the checkpoint: what it was trained from and how
FULL_LR, LORA_LR = 5e-7, 1e-5
SFT_SCALES = ("sum", "mean")


@dataclass
class DPOSettings:
    """DPO hyper-parameters; every default is the paper's (docs/DESIGN.md §1)."""

    beta: float = field(default=0.1, metadata={"help": "DPO β: strength of the pull towards the reference model."})
    loss_type: str = field(default="sigmoid", metadata={"help": "TRL loss type; the paper uses plain sigmoid DPO."})
    sft_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of an NLL (SFT) term on the chosen answers, added to the DPO loss; 0, the paper's plain "
            "DPO. Small models trained from scratch keep their fluency with it."
        },
    )
    sft_scale: str = field(
        default="sum",
        metadata={
            "help": "How the SFT term measures a chosen answer: 'sum', its summed token log-probability, as the "
            "reference (SFT_weight × the summed log-prob, averaged over the pairs); 'mean', TRL's 'sft' loss, "
            "the mean over the batch's chosen tokens (about answer-length times weaker at the same weight)."
        },
    )
    learning_rate: float | None = field(
        default=None, metadata={"help": f"Peak learning rate; default {FULL_LR} (full) or {LORA_LR} (LoRA)."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warm-up."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent warming up linearly."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    global_batch_size: int = field(
        default=8, metadata={"help": "Pairs per optimizer step over all devices (gradient accumulation fills it)."}
    )
    per_device_batch_size: int = field(default=1, metadata={"help": "Pairs per forward pass on one device."})
    epochs: float = field(default=4.0, metadata={"help": "Passes over the pairs."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: run all epochs)."})
    train_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Train the vision tower too (full fine-tuning only); off, the reference's way: the tower runs "
            "without gradients while the projector and the language model train."
        },
    )
    lora: bool = field(
        default=False,
        metadata={"help": "Train a LoRA adapter on the language model, and the projector fully, not all weights."},
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA α (scaling numerator)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    merge_lora: bool = field(
        default=False, metadata={"help": "Merge the LoRA adapter into the weights and save a full checkpoint."}
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: on when on a GPU."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Trade compute for memory; default: on when on a GPU."}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate prompt + answer to this many tokens (image tokens count); none."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for data order, dropout and LoRA initialisation."})
    logging_steps: int = field(default=1, metadata={"help": "Report the loss every this many steps."})

    def __post_init__(self):
        checks = {
            "beta": self.beta > 0,
            "sft_weight": self.sft_weight >= 0,
            "global_batch_size": self.global_batch_size >= 1,
            "per_device_batch_size": self.per_device_batch_size >= 1,
            "epochs": self.epochs > 0,
            "learning_rate": self.learning_rate is None or self.learning_rate > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "lora_r": self.lora_r >= 1,
            "logging_steps": self.logging_steps >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid DPO settings: " + ", ".join(f"{name}={getattr(self, name)!r}" for name in bad))
        if self.sft_scale not in SFT_SCALES:
            raise ValueError(f"invalid DPO settings: sft_scale={self.sft_scale!r} (one of {', '.join(SFT_SCALES)})")
        if self.merge_lora and not self.lora:
            raise ValueError("merge_lora needs lora")
        if self.train_vision_tower and self.lora:
            raise ValueError("train_vision_tower needs full fine-tuning (LoRA trains the language model and projector)")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LR if self.lora else FULL_LR

    @classmethod
    def from_mapping(cls, values: dict) -> "DPOSettings":
        """Settings from a dict (e.g. an iteration's config): the keys that name a field, the rest ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def cli_args(self) -> list[str]:
        """The `python -m training dpo` options that reproduce these settings (only the non-defaults)."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == (f.default if f.default is not MISSING else None):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            elif value is None:
                args.append(flag + "=none")
            else:
                args.append(f"{flag}={value}")
        return args


def progress_line(record: dict) -> str:
    """One progress record as the CLI prints it."""
    return PROGRESS_PREFIX + json.dumps(record)


def parse_progress(line: str) -> dict | None:
    """The record in a line the CLI printed, or None for any other output."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        return json.loads(line[len(PROGRESS_PREFIX) :])
    except json.JSONDecodeError:
        return None


def read_record(checkpoint) -> dict | None:
    """What `train_dpo` recorded next to a checkpoint (policy, settings, last metrics); None if not ours."""
    path = Path(checkpoint, RECORD_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def load_pairs(path):
    """TRL rows from a `datasets` folder, a .parquet file or a .jsonl file (labeling.formats writes all three)."""
    from datasets import Dataset, load_from_disk

    from labeling.formats import load_trl_jsonl

    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    if path.suffix == ".jsonl":
        return load_trl_jsonl(path)
    raise ValueError(f"{path}: expected a datasets folder, a .parquet or a .jsonl file")


def _callback(report: Callable[[dict], None]):
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        """Hands the trainer's logs to `report`, from the main process only."""

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                report({"event": "start", "step": 0, "total": state.max_steps})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                report({"event": "log", "step": state.global_step, "total": state.max_steps, **(logs or {})})

    return Report()


def trl_config(settings: DPOSettings, out, world_size: int = 1):
    """TRL's DPOConfig for these settings; gradient accumulation makes up the global batch."""
    import torch
    from trl import DPOConfig

    on_gpu = torch.cuda.is_available()
    bf16 = settings.bf16 if settings.bf16 is not None else on_gpu and torch.cuda.is_bf16_supported()
    checkpointing = settings.gradient_checkpointing if settings.gradient_checkpointing is not None else on_gpu
    per_step = settings.per_device_batch_size * world_size
    return DPOConfig(
        output_dir=str(out),
        beta=settings.beta,
        loss_type=[settings.loss_type, "sft"] if settings.sft_weight else [settings.loss_type],
        loss_weights=[1.0, settings.sft_weight] if settings.sft_weight else None,
        learning_rate=settings.lr,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=settings.weight_decay,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=max(1, settings.global_batch_size // per_step),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        bf16=bf16,
        activation_checkpointing=checkpointing,
        max_length=settings.max_length,
        seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="no",  # one checkpoint, saved at the end
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=on_gpu,
    )


def lora_config(settings: DPOSettings, model):
    """LoRA on the language model's linear layers, the projector trained fully (LLaVA's LoRA recipe)."""
    from peft import LoraConfig

    parts = vlm_parts(model)
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=language_linear_names(model, parts),
        modules_to_save=[parts.projector],
        task_type="CAUSAL_LM",
    )


def freeze_vision_tower(model) -> None:
    """Run the vision tower without gradients, as the reference does; a projector nested in it still trains."""
    parts = vlm_parts(model)
    for name, parameter in model.named_parameters():
        if parts.in_vision_tower(name):
            parameter.requires_grad_(False)


def restore_lora_dropout(model, p: float) -> None:
    """Put the configured dropout back on LoRA's branches, which TRL's `disable_dropout` set to 0 with the rest.

    The model's own dropouts stay off, so the policy and the reference see the same network.
    """
    import torch

    for name, module in model.named_modules():
        if name.rsplit(".", 2)[-2:-1] == ["lora_dropout"] and isinstance(module, torch.nn.Dropout):
            module.p = p


def summed_sft_trainer(sft_weight: float):
    """TRL's DPOTrainer whose SFT term is the reference's: −sft_weight × the chosen answers' summed log-prob,
    averaged over the pairs, where TRL's 'sft' loss is −(the mean log-prob over the batch's chosen tokens).

    Σ_tokens / pairs = mean_over_tokens × (chosen tokens / pairs), so giving the 'sft' loss that weight, from each
    batch's completion mask (the chosen rows are its first half), makes TRL compute exactly the summed term with
    no second forward pass and nothing else of TRL's loss copied.
    """
    from trl import DPOTrainer

    class SummedSFTDPOTrainer(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            chosen, _ = inputs["completion_mask"][..., 1:].chunk(2, dim=0)  # as TRL masks the shifted log-probs
            per_pair = sft_weight * chosen.sum() / chosen.size(0)
            self.loss_weights = [per_pair if kind == "sft" else 1.0 for kind in self.loss_types]
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return SummedSFTDPOTrainer


def build_trainer(dataset, policy, out, settings: DPOSettings, callbacks=()):
    """TRL's DPOTrainer for `policy` (a local checkpoint folder) on `dataset`, set up as the reference trains."""
    import torch
    from transformers import AutoModelForImageTextToText
    from trl import DPOTrainer

    from labeling.processors import load_processor

    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by `accelerate launch`
    args = trl_config(settings, out, world_size)
    args.trust_remote_code = trust_remote_code(policy)  # TRL loads the reference model itself
    try:
        processor = load_processor(policy)
        # Full fine-tuning keeps float32 master weights under bf16 autocast: a 5e-7 step vanishes in bf16
        # rounding. With LoRA only the adapter trains (PEFT keeps it in float32), so the frozen base is bf16.
        dtype = torch.bfloat16 if args.bf16 and settings.lora else torch.float32
        model = AutoModelForImageTextToText.from_pretrained(
            policy, dtype=dtype, use_safetensors=True, trust_remote_code=args.trust_remote_code
        )
    except OSError as exc:
        raise OSError(f"cannot load the policy {str(policy)!r}: {exc}") from exc
    if not settings.lora and not settings.train_vision_tower:
        freeze_vision_tower(model)
    summed = settings.sft_weight and settings.sft_scale == "sum"
    trainer = (summed_sft_trainer(settings.sft_weight) if summed else DPOTrainer)(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(settings, model) if settings.lora else None,
        callbacks=list(callbacks),
    )
    if settings.lora:
        restore_lora_dropout(trainer.model, settings.lora_dropout)
    return trainer


def train_dpo(pairs, policy, out, settings: DPOSettings | None = None, report: Callable[[dict], None] | None = None):
    """Train `policy` (a local checkpoint folder) on the pairs at `pairs`; save the result and its processor.

    `out` then holds a full checkpoint, or with `lora` (and no `merge_lora`) the adapter alone, plus
    `rlaifv_dpo.json` recording the policy, the settings and the last logged metrics. Returns that record.
    """
    settings = settings or DPOSettings()
    report = report or (lambda record: None)
    dataset = load_pairs(pairs)
    if len(dataset) == 0:
        raise ValueError(f"{pairs}: no pairs to train on")
    trainer = build_trainer(dataset, policy, out, settings, callbacks=[_callback(report)])
    trainer.train()
    last = next((entry for entry in reversed(trainer.state.log_history) if "loss" in entry), {})
    record = {
        "policy": str(policy),
        "pairs": len(dataset),
        "steps": trainer.state.global_step,
        "loss": last.get("loss"),
        "metrics": last,
        "settings": asdict(settings),
    }
    if settings.lora and settings.merge_lora:
        trainer.accelerator.wait_for_everyone()
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(out)
    else:
        trainer.save_model(out)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(out)
        Path(out, RECORD_FILE).write_text(json.dumps(record, indent=2))
        if is_trusted(policy):  # the checkpoint runs the same code, which save_pretrained copied beside it
            Path(out, MARKER).touch()
        report({"event": "saved", "out": str(out), **{k: record[k] for k in ("pairs", "steps", "loss")}})
    trainer.accelerator.wait_for_everyone()
    return record


def merge_adapter(adapter, out):
    """Merge a saved LoRA adapter into its base model and save a full checkpoint (with the processor) at `out`."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForImageTextToText

    from labeling.processors import load_processor

    if not Path(adapter, "adapter_model.safetensors").is_file():  # PEFT would fall back to a pickled .bin
        raise OSError(f"{adapter}: no adapter_model.safetensors (adapters are loaded from safetensors only)")
    base_path = PeftConfig.from_pretrained(adapter).base_model_name_or_path
    base = AutoModelForImageTextToText.from_pretrained(
        base_path, use_safetensors=True, trust_remote_code=trust_remote_code(base_path)
    )
    PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(out)
    load_processor(adapter).save_pretrained(out)
    if is_trusted(base_path):
        Path(out, MARKER).touch()
    record = Path(adapter, RECORD_FILE)
    if record.exists():
        shutil.copy(record, Path(out, RECORD_FILE))
