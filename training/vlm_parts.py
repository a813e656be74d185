"""Which modules of a vision-language model are its vision tower, its projector and its language model.

RLAIF-V trains as LLaVA does: the vision tower runs without gradients, the multimodal projector trains
fully, and LoRA (when used) goes on the language model's linear layers only. That needs the three parts by
name. Transformers' VLM classes name them by role rather than by family: LLaVA, Gemma 3, PaliGemma, Mllama
and InternVL hold `vision_tower` (or `vision_model`), `multi_modal_projector` and `language_model`;
Qwen2-VL and Qwen2.5-VL hold `visual`, whose `merger` is the projector, and `language_model`; Idefics3 /
SmolVLM hold `vision_model`, `connector` and `text_model`. A model with another layout gets a clear error
rather than a guess.
"""

from dataclasses import dataclass

VISION_NAMES = ("vision_tower", "vision_model", "visual")
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "merger")
LANGUAGE_NAMES = ("language_model", "text_model")


@dataclass(frozen=True)
class VlmParts:
    """Qualified module names (as `model.named_modules()` gives them) of a VLM's three parts."""

    vision: str
    projector: str
    language: str

    def in_vision_tower(self, name: str) -> bool:
        """Whether parameter or module `name` belongs to the vision tower (a projector nested in it does not)."""
        return _under(name, self.vision) and not _under(name, self.projector)

    def in_language_model(self, name: str) -> bool:
        return _under(name, self.language)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _outermost(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """The shortest qualified name whose last part is one of `candidates`."""
    found = [name for name in names if name.rsplit(".", 1)[-1] in candidates]
    return min(found, key=lambda name: (name.count("."), name)) if found else None


def vlm_parts(model) -> VlmParts:
    """The vision tower, projector and language model of `model`; ValueError for a layout not known here."""
    names = [name for name, _ in model.named_modules() if name]
    parts = {
        "vision tower": _outermost(names, VISION_NAMES),
        "projector": _outermost(names, PROJECTOR_NAMES),
        "language model": _outermost(names, LANGUAGE_NAMES),
    }
    missing = [part for part, name in parts.items() if name is None]
    if missing:
        raise ValueError(
            f"{type(model).__name__}: cannot find its {', '.join(missing)}; known layouts name the vision tower "
            f"one of {', '.join(VISION_NAMES)}, the projector one of {', '.join(PROJECTOR_NAMES)} and the language "
            f"model one of {', '.join(LANGUAGE_NAMES)}"
        )
    return VlmParts(vision=parts["vision tower"], projector=parts["projector"], language=parts["language model"])


def language_linear_names(model, parts: VlmParts) -> list[str]:
    """The qualified names of the language model's linear layers: LLaVA's LoRA targets (no lm_head)."""
    import torch

    return [
        name
        for name, module in model.named_modules()
        if parts.in_language_model(name) and isinstance(module, torch.nn.Linear)
    ]
