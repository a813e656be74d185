"""A checkpoint's processor for images alone, where its video processor cannot load.

Qwen2-VL, Qwen2.5-VL and LLaVA-OneVision processors hold a video processor, and transformers builds video
processors only with torchvision, which this project's CPU environment must not have (its PyPI builds break
transformers' PIL image path). Images never need the video processor, so `load_processor` then builds the
same processor class without it: same name, same image processor, tokenizer and chat template, same
outputs for images, and `save_pretrained` writes the files a full processor reads back. Where torchvision
is present (the GPU worker), or the family has no video processor, it is `AutoProcessor` unchanged. The
transformers engine, DPO, self-reward and the tiny checkpoints' builders load and make processors here.
"""

import json
from functools import cache
from pathlib import Path

import transformers
from transformers import AutoConfig, AutoProcessor
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from transformers.utils import is_torchvision_available

from labeling.remote_code import trust_remote_code

# The files that name a checkpoint's processor class, in the order AutoProcessor reads them.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


@cache
def image_only(processor_class: type) -> type:
    """`processor_class` without its video processor: the same class for everything an image needs.

    A processor builds, checks, loads and saves the parts `get_attributes` names; leaving the video
    processor out of that list is all it takes (its `__init__` then gets None for it and ignores it).
    The class keeps the parent's name, which is what `save_pretrained` records.
    """

    class ImageOnly(processor_class):
        @classmethod
        def get_attributes(cls):
            return [name for name in super().get_attributes() if name != "video_processor"]

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__
    return ImageOnly


def processor_class_of(path) -> type | None:
    """The transformers processor class a checkpoint folder names, or the one its model type maps to; None
    for a class transformers does not have (AutoProcessor then says what is wrong)."""
    for name in PROCESSOR_FILES:
        file = Path(path, name)
        if file.is_file():
            class_name = json.loads(file.read_text()).get("processor_class")
            if class_name:
                return getattr(transformers, class_name, None)
    config_class = type(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code(path)))
    return PROCESSOR_MAPPING[config_class] if config_class in PROCESSOR_MAPPING else None


def needs_image_only(processor_class: type | None) -> bool:
    if processor_class is None or not hasattr(processor_class, "get_attributes"):
        return False
    return "video_processor" in processor_class.get_attributes() and not is_torchvision_available()


def load_processor(path):
    """The checkpoint's processor; without torchvision, its image-only form if it has a video processor.

    A folder shipping its own code loads only where it is marked as trusted (`labeling.remote_code`).
    """
    trusted = trust_remote_code(path)
    processor_class = processor_class_of(path)
    if needs_image_only(processor_class):
        return image_only(processor_class).from_pretrained(path, trust_remote_code=trusted)
    return AutoProcessor.from_pretrained(path, trust_remote_code=trusted)


def make_processor(processor_class: type, **parts):
    """`processor_class(**parts)`, image-only where `load_processor` would load it so (the tiny builders)."""
    if needs_image_only(processor_class):
        parts.pop("video_processor", None)
        return image_only(processor_class)(**parts)
    return processor_class(**parts)
