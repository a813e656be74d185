"""The iteration forms (the staff page's and the admin's): validation lives here, views stay thin."""

import json

from django import forms

from labeling.backends.coin_flip import COIN_FLIP
from training.dpo import DPOSettings
from webapp import limits
from webapp.iterations.config import (
    DATA_KEYS,
    DEFAULT_CONFIG,
    MODEL_KEYS,
    RULE_SPLITTER,
    STRATEGIES,
    check_engine_options,
)
from webapp.iterations.creating import create_iteration
from webapp.models import Instruction, Iteration, Split
from webapp.places import PlaceError, check_installed, data_files, installed_models

KNOWN_MODELS_LIST = "known-models"  # the id of the <datalist> the new iteration page renders
NOT_TRAINED_ON = (
    "Iterations answer and train on the train split: the validation split is where settings are chosen and the "
    "held-out split is the test split the figures report, so neither is ever trained on."
)

# Config keys that describe where an imported iteration came from: a new iteration must not copy them (the
# RLAIF-V import recognises a file imported before by its sha256).
NOT_COPIED = {"imported_from", "sha256"}


# The strategies in words, for the iteration form (webapp.iterations.config.STRATEGIES).
STRATEGY_CHOICES = [
    ("rlaifv", "RLAIF-V: the labeler judges each claim of an answer (divide and conquer)"),
    ("whole_response", "Whole response: the labeler judges each whole answer with one question"),
    ("self_reward", "Self-reward: the policy's own implicit reward ranks its answers (a DPO checkpoint)"),
]
assert [name for name, _ in STRATEGY_CHOICES] == list(STRATEGIES)


def model_name(value: str, engine: str | None = None) -> str:
    """An installed model folder under MODELS_DIR (or the openai engine's name for a model): never a URL, a hub
    id to fetch or a path elsewhere, which a worker would otherwise be asked to open (webapp/places.py)."""
    try:
        return check_installed(value, engine)
    except PlaceError as error:
        raise forms.ValidationError(f"{error}.") from None


def checked_config(config: dict, engine: str | None = None) -> dict:
    """Config whose model keys (MODEL_KEYS) and data keys (DATA_KEYS), where given, name places the site reads
    from, checked as the form's model fields are (a second labeler given as a URL, or `coco_instances:
    /etc/passwd`, was let through)."""
    for key in MODEL_KEYS:
        if key in config and config[key] is not None:
            if not isinstance(config[key], str):
                raise forms.ValidationError(f"{key} must be a model name.")
            config[key] = model_name(config[key], engine)
    for key in DATA_KEYS:
        if config.get(key) is not None:
            try:
                data_files(config[key], key)
            except PlaceError as error:
                raise forms.ValidationError(f"{error}.") from None
    return config


def dpo_settings_error(config: dict) -> str | None:
    """What is wrong with the config's DPO settings (training.dpo.DPOSettings fields, e.g. sft_weight and
    sft_scale), as training would refuse them; None when they are fine."""
    try:
        DPOSettings.from_mapping(config)
    except (TypeError, ValueError) as error:
        return f"{error}."
    return None


class ModelNamesForm(forms.ModelForm):
    """An iteration's model names, checked wherever staff type them (the new iteration page, a draft in the admin):
    after the engine, which says whether they are folders or a server's names."""

    def clean(self):
        cleaned = super().clean()
        for field in ("policy", "labeler", "splitter"):
            value = cleaned.get(field)
            if field == "splitter" and value == RULE_SPLITTER:
                continue
            if value is not None:
                try:
                    cleaned[field] = model_name(value, cleaned.get("engine"))
                except forms.ValidationError as error:
                    self.add_error(field, error)
        return cleaned


class SettingsJSONField(forms.JSONField):
    """JSON settings: nesting deep enough to exhaust the parser's recursion is refused like any bad JSON (it was a
    RecursionError, a 500)."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("The JSON is nested too deeply.", code="invalid") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return data


class DraftForm(ModelNamesForm):
    """A draft's models and config, which the admin lets staff change until it is launched."""

    class Meta:
        model = Iteration
        fields = ["policy", "labeler", "splitter", "engine", "config"]
        field_classes = {"config": SettingsJSONField}

    def clean_config(self):
        value = self.cleaned_data["config"]
        if not isinstance(value, dict):
            raise forms.ValidationError('Give the settings as a JSON object, e.g. {"n": 4}.')
        if error := limits.too_long("The settings' JSON", json.dumps(value), limits.SETTINGS):
            raise forms.ValidationError(error + ".")  # a draft's page shows them: 2 MB made it 4 MB
        return value

    def clean(self):
        cleaned = super().clean()
        config = cleaned.get("config")
        if isinstance(config, dict):
            try:
                cleaned["config"] = checked_config(config, cleaned.get("engine"))
            except forms.ValidationError as error:
                self.add_error("config", error)
            if error := dpo_settings_error(config):
                self.add_error("config", error)
        if isinstance(config, dict) and "engine_options" in config and cleaned.get("engine"):
            try:
                config["engine_options"] = check_engine_options(cleaned["engine"], config["engine_options"])
            except ValueError as error:
                self.add_error("config", f"{error}.")
        return cleaned


class IterationForm(ModelNamesForm):
    """A new draft iteration: models, sampling, pairing and DPO settings, and which instructions to run on."""

    strategy = forms.ChoiceField(
        choices=STRATEGY_CHOICES,
        initial=STRATEGIES[0],
        required=False,  # left out: the other settings' strategy, else rlaifv
        help_text="How answers become pairs. The labeler judges the held-out answers of every strategy.",
    )
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
    engine_options = SettingsJSONField(
        required=False,
        help_text="Per model, the engine's options over the workers' defaults, e.g. "
        '{"policy": {"dtype": "bfloat16"}, '
        '"labeler": {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.85, "max_model_len": 4096}}. vLLM: dtype, '
        "tensor_parallel_size, gpu_memory_utilization, max_model_len, max_num_seqs; transformers: dtype, device_map, "
        "attn_implementation; both: gpus (the GPUs the model is spread over: its queue) and memory_gb; every engine: "
        'yes_no_variants (true: " Yes" counts beside "Yes")',
    )
    other_settings = SettingsJSONField(
        required=False,
        help_text="More config keys as a JSON object (e.g. eval_temperature, sft_weight); the fields above win",
    )

    CONFIG_FIELDS = ["strategy", "n", "temperature", "top_p", "max_new_tokens", "seed", "pairs_per_instruction",
                     "chunk_size", "beta", "learning_rate", "epochs", "lora", "engine_options"]  # fmt: skip

    class Meta:
        model = Iteration
        fields = ["policy", "labeler", "splitter", "engine"]

    def __init__(self, *args, previous: Iteration | None = None, **kwargs):
        """`previous`: the iteration whose settings the form starts from (the next one usually repeats it); by
        default the latest, on the staff page and in the admin alike. Initial values the caller gives win."""
        super().__init__(*args, **kwargs)
        previous = previous or Iteration.objects.order_by("-number").first()
        for name in ("policy", "labeler"):  # typed freely, with the known models offered (known_models)
            self.fields[name].widget.attrs["list"] = KNOWN_MODELS_LIST
        self.fields["labeler"].help_text = (
            "Judges the claims (rlaifv) or the whole answers (whole_response), and the held-out answers of every "
            "strategy: a folder under MODELS_DIR, or coin-flip (the control)"
        )
        sources = Instruction.objects.values_list("source", flat=True).distinct().order_by("source")
        self.fields["source"].choices = [("", "all sources")] + [(s, s) for s in sources]
        installed = installed_models()
        defaults = {
            "policy": Iteration.default_policy() or ("tiny-llava" if "tiny-llava" in installed else ""),
            "labeler": "tiny-llava" if "tiny-llava" in installed else "",
        }
        self.initial = defaults | (self.settings_of(previous) if previous else {}) | self.initial

    @property
    def known_models(self) -> list[str]:
        """Models to offer: the folders under MODELS_DIR (checkpoints included), the models iterations named,
        and the coin-flip control labeler."""
        named = Iteration.objects.values_list("policy", "labeler", "checkpoint")
        return sorted(set(installed_models()) | {n for row in named for n in row if n} | {COIN_FLIP})

    @classmethod
    def settings_of(cls, previous: Iteration) -> dict:
        """The form's values that repeat `previous`: its models, its config (the keys without a field of their
        own as other settings), its source and split when all its instructions share one."""
        config = {k: v for k, v in (previous.config or {}).items() if k not in NOT_COPIED}
        # IterationForm's own fields: the admin's subclass (modelform_factory) lists the non-model ones too.
        values = {field: getattr(previous, field) for field in IterationForm.Meta.fields}
        values["policy"] = previous.checkpoint or Iteration.default_policy() or previous.policy
        values |= {k: config[k] for k in cls.CONFIG_FIELDS if k in config}
        values["other_settings"] = {k: v for k, v in config.items() if k not in cls.CONFIG_FIELDS} or None
        kinds = list(previous.instructions.values_list("source", "split").distinct()[:2])
        if len(kinds) == 1:
            values["source"], values["split"] = kinds[0]
        return values

    def clean_strategy(self):
        return self.cleaned_data["strategy"] or None

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

    def clean_engine_options(self):
        value = self.cleaned_data["engine_options"]
        if error := limits.too_long("The engine options' JSON", json.dumps(value), limits.SETTINGS):
            raise forms.ValidationError(error + ".")
        return value or None

    def clean_split(self):
        if (split := self.cleaned_data["split"]) != Split.TRAIN:
            raise forms.ValidationError(NOT_TRAINED_ON)
        return split

    def instructions(self):
        chosen = Instruction.objects.filter(split=self.cleaned_data["split"])
        if self.cleaned_data.get("source"):
            chosen = chosen.filter(source=self.cleaned_data["source"])
        return chosen

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("other_settings"):
            try:
                cleaned["other_settings"] = checked_config(cleaned["other_settings"], cleaned.get("engine"))
            except forms.ValidationError as error:
                self.add_error("other_settings", error)
        own = {k: cleaned[k] for k in ("beta", "learning_rate", "epochs", "lora") if cleaned.get(k) is not None}
        if error := dpo_settings_error((cleaned.get("other_settings") or {}) | own):
            self.add_error("other_settings", error)
        if "split" in cleaned and not self.instructions().exists():
            raise forms.ValidationError("No instructions match this source and split.")
        if cleaned.get("engine_options") is not None and cleaned.get("engine"):
            try:
                cleaned["engine_options"] = check_engine_options(cleaned["engine"], cleaned["engine_options"])
            except ValueError as error:
                self.add_error("engine_options", f"{error}.")
        if "engine_options" in (cleaned.get("other_settings") or {}):
            self.add_error("other_settings", "Give the engine options in their own field.")
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
