"""The tiny offline checkpoints: built deterministically, reloadable with the Auto classes, usable."""

import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from labeling.sample_images import sample_image
from labeling.tiny_models import FAMILIES, build_tiny_models, build_tokenizer
from labeling.tiny_vocab import CHANGEQ_PROMPT, COCO_CLASSES, SPLIT_PROMPT

pytestmark = pytest.mark.slow


def test_it_builds_every_family_small_llava_and_the_text_model_quickly(tmp_path):
    start = time.perf_counter()
    paths = build_tiny_models(tmp_path)
    elapsed = time.perf_counter() - start

    assert sorted(paths) == sorted([*FAMILIES, "small-llava", "tiny-lm"])
    for path in paths.values():
        assert (path / "model.safetensors").exists()
        assert (path / "tokenizer.json").exists()
    assert elapsed < 8  # about 1 s here


def test_it_builds_identical_weights_twice(tmp_path, tiny_models_dir):
    again = build_tiny_models(tmp_path)

    for name, path in again.items():
        first = load_file(tiny_models_dir / name / "model.safetensors")
        second = load_file(path / "model.safetensors")
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first)


def test_it_has_one_token_for_every_word_the_prompts_use():
    tokenizer = build_tokenizer()
    texts = [
        SPLIT_PROMPT,
        CHANGEQ_PROMPT,
        " ".join(COCO_CLASSES),
        "Is it true that the man is red? Please answer yes or no.",
    ]

    for text in texts:
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    for word in ["Yes", "yes", "No", "no"]:
        assert len(tokenizer.encode(word, add_special_tokens=False)) == 1


def test_it_reloads_the_llava_and_answers_about_an_image(tiny_models_dir):
    processor = AutoProcessor.from_pretrained(tiny_models_dir / "tiny-llava")
    model = AutoModelForImageTextToText.from_pretrained(tiny_models_dir / "tiny-llava")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[sample_image("astronaut")], return_tensors="pt")

    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)

    assert prompt == "USER: <image> What is in the image?\nASSISTANT:"
    assert (inputs["input_ids"] == processor.image_token_id).sum() == 16  # (32 px / 8 px) ** 2
    answer = processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()


def test_it_builds_the_small_llava_with_224_px_images(tiny_models_dir):
    processor = AutoProcessor.from_pretrained(tiny_models_dir / "small-llava")
    model = AutoModelForImageTextToText.from_pretrained(tiny_models_dir / "small-llava")
    inputs = processor(text=["USER: <image> hello"], images=[sample_image("coffee")], return_tensors="pt")

    assert inputs["pixel_values"].shape == (1, 3, 224, 224)
    assert (inputs["input_ids"] == processor.image_token_id).sum() == 256  # (224 px / 14 px) ** 2
    assert 2_000_000 < model.num_parameters() < 5_000_000


def test_its_chat_template_makes_the_prompt_a_prefix_of_the_full_conversation(tiny_models_dir):
    processor = AutoProcessor.from_pretrained(tiny_models_dir / "tiny-llava")
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]
    answer = [{"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}]

    with_generation_prompt = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = processor.apply_chat_template(prompt + answer, tokenize=False)

    assert full.startswith(with_generation_prompt)
    assert full.endswith("ASSISTANT: A cat.</s>\n")


def test_it_reloads_the_text_model_and_generates(tiny_models_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models_dir / "tiny-lm")
    model = AutoModelForCausalLM.from_pretrained(tiny_models_dir / "tiny-lm")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe the cat."}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt")

    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)

    assert prompt == "USER: Describe the cat.\nASSISTANT:"
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
