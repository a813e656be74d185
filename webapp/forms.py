"""Forms: validation lives here, views stay thin."""

import json

from django import forms
from django.db import transaction

from webapp import audit, limits
from webapp.config import DEFAULT_CONFIG, STRATEGIES
from webapp.dispatch import enqueue_import
from webapp.iterations import create_iteration
from webapp.models import AuditAction, Instruction, InstructionImport, Iteration, Split

# Config keys that describe where an imported iteration came from: a new iteration must not copy them (the
# RLAIF-V import recognises a file imported before by its sha256).
NOT_COPIED = {"imported_from", "sha256"}


class ModelNamesForm(forms.ModelForm):
    """An iteration's model names, checked wherever staff type them (the new iteration page, a draft in the admin)."""

    def _model_name(self, field: str) -> str:
        """A local folder or a hub id: never a URL, which a worker would otherwise be asked to fetch."""
        value = self.cleaned_data[field].strip()
        if "://" in value:
            raise forms.ValidationError("Give a model folder under MODELS_DIR, a local path or a hub id, not a URL.")
        return value

    def clean_policy(self):
        return self._model_name("policy")

    def clean_labeler(self):
        return self._model_name("labeler")

    def clean_splitter(self):
        return self._model_name("splitter")


class DraftForm(ModelNamesForm):
    """A draft's models and config, which the admin lets staff change until it is launched."""

    class Meta:
        model = Iteration
        fields = ["policy", "labeler", "splitter", "engine", "config"]

    def clean_config(self):
        value = self.cleaned_data["config"]
        if not isinstance(value, dict):
            raise forms.ValidationError('Give the settings as a JSON object, e.g. {"n": 4}.')
        return value


class IterationForm(ModelNamesForm):
    """A new draft iteration: models, sampling, pairing and DPO settings, and which instructions to run on."""

    source = forms.ChoiceField(required=False, help_text="Only instructions from this source (blank: all)")
    split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN)
    n = forms.IntegerField(
        min_value=2, max_value=64, initial=DEFAULT_CONFIG["n"], help_text="Candidates per instruction"
    )
    temperature = forms.FloatField(min_value=0.0, max_value=2.0, initial=DEFAULT_CONFIG["temperature"])
    top_p = forms.FloatField(min_value=0.01, max_value=1.0, initial=DEFAULT_CONFIG["top_p"])
    max_new_tokens = forms.IntegerField(min_value=1, max_value=4096, initial=DEFAULT_CONFIG["max_new_tokens"])
    seed = forms.IntegerField(min_value=0, initial=DEFAULT_CONFIG["seed"])
    pairs_per_instruction = forms.IntegerField(
        min_value=1, max_value=45, initial=DEFAULT_CONFIG["pairs_per_instruction"]
    )
    chunk_size = forms.IntegerField(min_value=1, max_value=10_000, required=False, help_text="Instructions per job")
    beta = forms.FloatField(min_value=0.0, initial=0.1, help_text="DPO β")
    learning_rate = forms.FloatField(min_value=0.0, initial=5e-7)
    epochs = forms.IntegerField(min_value=1, max_value=100, initial=4)
    lora = forms.BooleanField(required=False, help_text="Train a LoRA adapter (r 64, α 16) instead of all weights")
    other_settings = forms.JSONField(
        required=False,
        help_text="More config keys as a JSON object (e.g. eval_temperature, sft_weight); the fields above win",
    )

    CONFIG_FIELDS = ["n", "temperature", "top_p", "max_new_tokens", "seed", "pairs_per_instruction", "chunk_size",
                     "beta", "learning_rate", "epochs", "lora"]  # fmt: skip

    class Meta:
        model = Iteration
        fields = ["policy", "labeler", "splitter", "engine"]

    def __init__(self, *args, previous: Iteration | None = None, **kwargs):
        """`previous`: the iteration whose settings the form starts from (the next one usually repeats it)."""
        super().__init__(*args, **kwargs)
        sources = Instruction.objects.values_list("source", flat=True).distinct().order_by("source")
        self.fields["source"].choices = [("", "all sources")] + [(s, s) for s in sources]
        self.initial["policy"] = Iteration.default_policy() or "tiny-llava"
        self.initial["labeler"] = "tiny-llava"
        if previous:
            self.initial.update(self.settings_of(previous))

    @classmethod
    def settings_of(cls, previous: Iteration) -> dict:
        """The form's values that repeat `previous`: its models, its config (the keys without a field of their
        own as other settings), its source and split when all its instructions share one."""
        config = {k: v for k, v in (previous.config or {}).items() if k not in NOT_COPIED}
        values = {field: getattr(previous, field) for field in cls.Meta.fields}
        values["policy"] = previous.checkpoint or Iteration.default_policy() or previous.policy
        values |= {k: config[k] for k in cls.CONFIG_FIELDS if k in config}
        values["other_settings"] = {k: v for k, v in config.items() if k not in cls.CONFIG_FIELDS} or None
        kinds = list(previous.instructions.values_list("source", "split").distinct()[:2])
        if len(kinds) == 1:
            values["source"], values["split"] = kinds[0]
        return values

    def clean_other_settings(self):
        value = self.cleaned_data["other_settings"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"eval_temperature": 0.7}.')
        if value.get("strategy", STRATEGIES[0]) not in STRATEGIES:
            raise forms.ValidationError(f"strategy must be one of {', '.join(STRATEGIES)}.")
        if error := limits.too_long("The other settings' JSON", json.dumps(value), limits.SETTINGS):
            raise forms.ValidationError(error + ".")
        return value

    def instructions(self):
        chosen = Instruction.objects.filter(split=self.cleaned_data["split"])
        if self.cleaned_data.get("source"):
            chosen = chosen.filter(source=self.cleaned_data["source"])
        return chosen

    def clean(self):
        cleaned = super().clean()
        if "split" in cleaned and not self.instructions().exists():
            raise forms.ValidationError("No instructions match this source and split.")
        return cleaned

    def save(self, user):
        return create_iteration(
            instructions=self.instructions(),
            created_by=user,
            config=self.cleaned_data["other_settings"]
            | {k: self.cleaned_data[k] for k in self.CONFIG_FIELDS if self.cleaned_data.get(k) is not None},
            # This class's own fields: the admin's subclass (modelform_factory) lists every field it shows.
            **{field: self.cleaned_data[field] for field in IterationForm.Meta.fields},
        )


class ImportForm(forms.ModelForm):
    """Instructions to import: a JSONL and a zip of its images, checked by the worker that imports them."""

    class Meta:
        model = InstructionImport
        fields = ["jsonl", "images", "source"]
        labels = {"jsonl": "Instructions (JSONL)", "images": "Images (zip)"}
        help_texts = {
            "jsonl": "One object a line: image (a path inside the zip), question, optional source, split, objects.",
            "images": "A zip of the images the lines name.",
            "source": "For lines that name no source.",
        }
        widgets = {
            "jsonl": forms.ClearableFileInput(attrs={"accept": ".jsonl,.json,.txt"}),
            "images": forms.ClearableFileInput(attrs={"accept": ".zip"}),
        }

    def save(self, user):
        """Store the files and send the import to a CPU worker, once both are saved and on the audit trail."""
        upload = super().save(commit=False)
        upload.jsonl_name = self.cleaned_data["jsonl"].name[:255]
        upload.images_name = self.cleaned_data["images"].name[:255]
        upload.uploaded_by = user
        with transaction.atomic():
            upload.save()
            audit.record(
                AuditAction.UPLOAD, target=str(upload), jsonl=upload.jsonl_name, images=upload.images_name,
                source=upload.source,
            )  # fmt: skip
            enqueue_import(upload)
        return upload
