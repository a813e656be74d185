"""Every model family of the registry (`labeling.tiny_models.FAMILIES`), on its tiny offline checkpoint:
it loads the standard way, the prefix-cached yes/no equals a full forward, seeded sampling does not depend on
the batch, greedy decoding equals transformers' own, and a DPO step (full and LoRA) trains a checkpoint that
reloads and generates."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling
from labeling.backends.transformers_backend import TransformersBackend, load_image
from labeling.formats import RlaifvRecord, write_trl_dataset
from labeling.processors import load_processor, processor_class_of
from labeling.sample_images import save_sample_images
from labeling.tiny_models import FAMILIES
from training.dpo import DPOSettings, train_dpo
from training.vlm_parts import PROJECTOR_NAMES, VISION_NAMES

pytestmark = pytest.mark.slow

# Families whose processor gives every image the same number of tokens (fixed resolution).
FIXED_RESOLUTION = {"tiny-llava", "tiny-gemma3"}
SHORT = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=8)
QUESTIONS = ["Is it true that there is a man in the image?", "Is there a red cup on the table?"]
ONE_STEP = {"max_steps": 1, "global_batch_size": 1, "warmup_ratio": 0.0, "learning_rate": 1e-2, "lora_r": 4}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Square, landscape and portrait photos: tiling and dynamic-resolution families give them different token
    counts and tensor shapes."""
    return save_sample_images(tmp_path_factory.mktemp("images"), ["astronaut", "coffee", "page"])


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tiny_models_dir):
    return request.param, tiny_models_dir / request.param


@pytest.fixture(scope="module")
def engine(family):
    return TransformersBackend(family[1], batch_size=4)


def image_token_counts(processor, paths) -> list[int]:
    """How many tokens each image's placeholder becomes (image tokens, markers and tile tags)."""
    counts = []
    for path in paths:
        ids = processor(text=[processor.image_token], images=[load_image(path)])["input_ids"][0]
        counts.append(len(ids))
    return counts


def test_it_is_saved_the_standard_way_and_loads_with_the_auto_classes(family):
    name, path = family
    saved = {file.name for file in path.iterdir()}

    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path)

    assert {"config.json", "model.safetensors", "processor_config.json", "chat_template.jinja"} <= saved
    assert {"tokenizer.json", "tokenizer_config.json"} <= saved
    assert (path / "model.safetensors").stat().st_size < 1_000_000
    assert (
        type(processor).__name__
        == processor_class_of(path).__name__
        == type(model).__name__.replace("ForConditionalGeneration", "Processor")
    )
    assert not hasattr(processor, "video_processor")  # images only: no torchvision here


def test_its_prefix_cached_yes_no_equals_a_full_forward_per_question(family, engine, images):
    name, _ = family
    queries = [PolarQuery(image, f"{q} Please answer yes or no.") for image in images for q in QUESTIONS]

    cached = engine.yes_no(queries)
    plain = engine.yes_no_plain(queries)

    counts = image_token_counts(engine.processor, images)
    assert (len(set(counts)) == 1) == (name in FIXED_RESOLUTION), counts
    for a, b in zip(cached, plain, strict=True):
        assert a.p_yes == pytest.approx(b.p_yes, abs=1e-5)
        assert a.p_no == pytest.approx(b.p_no, abs=1e-5)
    # The comparison can fail: the answers move with image and question far more than the tolerance.
    assert max(v.p_no for v in plain) - min(v.p_no for v in plain) > 1e-4


def test_a_seed_gives_the_same_text_whatever_shares_its_batch(engine, images):
    astronaut, coffee, page = images
    target = GenerationRequest(coffee, "Describe the image.", seeds=(7, 3, 11))
    others = [
        GenerationRequest(astronaut, "What is the man wearing on his head in this picture?", (7, 1)),
        GenerationRequest(page, "Is there a cat?", (5,)),
    ]

    alone = engine.generate([target], SHORT)[0]
    mixed = engine.generate([others[0], target, others[1]], SHORT)[1]

    assert mixed == alone
    assert len(set(alone)) == 3


def test_greedy_decoding_equals_transformers_generate(engine, images):
    """Same tokens as the model's own `generate`: the engine's positions (M-RoPE too) and masks are right."""
    question = "Describe the image."
    square_and_portrait = [images[0], images[2]]
    requests = [GenerationRequest(image, question, (0,)) for image in square_and_portrait]
    texts = engine.generate(requests, Sampling(0, 1, 8))

    for image, (text,) in zip(square_and_portrait, texts, strict=True):
        inputs = engine.processor(text=[engine._chat(question)], images=[load_image(image)], return_tensors="pt")
        output = engine.model.generate(**inputs, max_new_tokens=8, do_sample=False)
        expected = engine.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        assert text == expected.strip()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_one_dpo_step_trains_a_checkpoint_that_reloads_and_generates(family, lora, tmp_path, images):
    _, policy = family
    pairs = [
        RlaifvRecord(images[0].read_bytes(), "What is the person wearing?", "a white suit", "a red dog", "a.png"),
        RlaifvRecord(images[2].read_bytes(), "What is on the page?", "text", "a horse and a car", "p.png"),
    ]
    write_trl_dataset(pairs, tmp_path / "pairs")

    record = train_dpo(tmp_path / "pairs", policy, tmp_path / "out", DPOSettings(**ONE_STEP, lora=lora))

    assert record["steps"] == 1 and record["loss"] is not None
    if lora:
        adapter = load_file(tmp_path / "out" / "adapter_model.safetensors")
        assert any(name.endswith("lora_B.weight") and adapter[name].abs().sum() > 0 for name in adapter)
    else:
        before, after = load_file(policy / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
        changed = [name for name in before if not torch.equal(before[name], after[name])]
        # Full fine-tuning runs the vision tower without gradients, as the reference does (training.vlm_parts);
        # a projector nested in the tower (Qwen's merger) trains.
        parts = [name.split(".") for name in changed]
        tower = [p for p in parts if set(p) & set(VISION_NAMES) and not set(p) & set(PROJECTOR_NAMES)]
        assert not tower and any("layers" in p for p in parts)
    trained = TransformersBackend(tmp_path / "out")
    request = GenerationRequest(images[1], "Describe the image.", seeds=(0, 1))
    assert all(text.strip() for text in trained.generate([request], SHORT)[0])


def test_a_qwen2_vl_folder_laid_out_as_on_the_hub_loads_without_torchvision(tiny_models_dir, tmp_path, images):
    """Qwen/Qwen2-VL-2B-Instruct's layout: the image processor in preprocessor_config.json (min/max pixels, the
    processor class), the chat template in chat_template.json, no video processor config."""
    tiny = tiny_models_dir / "tiny-qwen2-vl"
    hub = tmp_path / "Qwen2-VL-2B-Instruct"
    shutil.copytree(tiny, hub)
    image_processor = json.loads((hub / "processor_config.json").read_text())["image_processor"]
    size = image_processor.pop("size")
    image_processor |= {"min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]}
    (hub / "preprocessor_config.json").write_text(json.dumps(image_processor | {"processor_class": "Qwen2VLProcessor"}))
    (hub / "chat_template.json").write_text(json.dumps({"chat_template": (hub / "chat_template.jinja").read_text()}))
    (hub / "processor_config.json").unlink()
    (hub / "chat_template.jinja").unlink()

    processor = load_processor(hub)
    queries = [PolarQuery(image, "Is there a man in the image? Please answer yes or no.") for image in images]

    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert image_token_counts(processor, images) == image_token_counts(load_processor(tiny), images)
    assert TransformersBackend(hub).yes_no(queries) == TransformersBackend(tiny).yes_no(queries)


def test_llava_next_is_laid_out_as_llava_hf_v1_6(tiny_models_dir, images):
    """The paper's labeler family (llava-v1.6-34b): anyres tiling over `image_grid_pinpoints`, a learnt newline."""
    path = tiny_models_dir / "tiny-llava-next"
    config = json.loads((path / "config.json").read_text())
    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path)

    assert config["model_type"] == "llava_next" and config["image_grid_pinpoints"]
    assert type(processor).__name__ == "LlavaNextProcessor"
    assert model.model.image_newline.shape == (config["text_config"]["hidden_size"],)
    assert len(set(image_token_counts(processor, images))) == 3  # square, landscape, portrait: three tilings
