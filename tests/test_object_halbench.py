"""Object HalBench as the reference runs it: 3-beam answers, ground truth from several COCO files, and the GPT
object extraction (an option) through an OpenAI-compatible server."""

import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labeling.backends.base import GenerationRequest, Sampling
from labeling.backends.openai_backend import OpenAIBackend
from labeling.backends.transformers_backend import TransformersBackend, load_image
from labeling.backends.vllm_backend import VLLMBackend, beam_search_kwargs
from labeling.sample_images import save_sample_images
from tests.chat_server import chat_completion, send_json
from training.chair import chair, load_ground_truth
from training.object_extraction import PROMPT, extract_mentions
from webapp.iterations.config import eval_sampling

QUESTION = "Describe the image."


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    return save_sample_images(tmp_path_factory.mktemp("images"), ["coffee"])[0]


def test_beam_search_gives_the_tokens_of_transformers_generate_with_3_beams(tiny_models_dir, coffee):
    engine = TransformersBackend(tiny_models_dir / "tiny-llava")
    request = GenerationRequest(coffee, QUESTION, seeds=(0, 1))

    [beams] = engine.generate([request], Sampling(temperature=0, max_new_tokens=12, num_beams=3))
    [greedy] = engine.generate([request], Sampling(temperature=0, max_new_tokens=12))

    inputs = engine.processor(text=[engine._chat(QUESTION)], images=[load_image(coffee)], return_tensors="pt")
    output = engine.model.generate(**inputs, max_new_tokens=12, do_sample=False, num_beams=3)
    expected = engine.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert beams == [expected, expected]
    assert greedy != beams  # on this image the beams find another answer, so the comparison can fail


def test_vllm_beam_search_goes_through_llm_beam_search(tiny_models_dir, coffee, monkeypatch):
    class Tokenizer:
        def decode(self, ids, skip_special_tokens=False):
            return " ".join(f"t{i}" for i in ids)

    class LLM:
        def __init__(self, model, **kwargs):
            self.calls = []

        def beam_search(self, prompts, params):
            self.calls.append((prompts, params))
            best = types.SimpleNamespace(tokens=[1, 2, 3, 7, 8], logprobs=[{}, {}])  # prompt 1 2 3, answer 7 8
            return [types.SimpleNamespace(sequences=[best]) for _ in prompts]

        def get_tokenizer(self):
            return Tokenizer()

    params = types.SimpleNamespace(BeamSearchParams=lambda **kwargs: kwargs)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM))
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    backend = VLLMBackend(str(tiny_models_dir / "tiny-llava"))

    texts = backend.generate([GenerationRequest(coffee, QUESTION, (0, 1))], Sampling(max_new_tokens=9, num_beams=3))

    assert texts == [["t7 t8", "t7 t8"]]
    [(prompts, sent)] = backend.engine(str(tiny_models_dir / "tiny-llava")).calls
    assert sent == beam_search_kwargs(Sampling(max_new_tokens=9, num_beams=3)) == {"beam_width": 3, "max_tokens": 9}
    assert prompts[0]["prompt"] == f"USER: <image> {QUESTION}\nASSISTANT:"
    assert prompts[0]["multi_modal_data"]["image"].size == load_image(coffee).size


def write_coco(folder, name, images, annotations, captions):
    """A COCO instances / captions pair: images (id), annotations (image id, category name), captions (id, text)."""
    categories = sorted({category for _, category in annotations})
    ids = {category: n + 1 for n, category in enumerate(categories)}
    instances = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in images],
        "categories": [{"id": ids[c], "name": c} for c in categories],
        "annotations": [{"image_id": i, "category_id": ids[c]} for i, c in annotations],
    }
    (folder / f"instances_{name}.json").write_text(json.dumps(instances))
    (folder / f"captions_{name}.json").write_text(json.dumps({"annotations": [
        {"image_id": i, "caption": text} for i, text in captions
    ]}))  # fmt: skip
    return folder / f"instances_{name}.json", folder / f"captions_{name}.json"


def test_ground_truth_merges_several_instance_and_caption_files(tmp_path):
    train = write_coco(tmp_path, "train2014", [1], [(1, "dog")], [(1, "A dog on a couch.")])
    val = write_coco(tmp_path, "val2014", [2], [(2, "car")], [(1, "A dog near a bicycle."), (2, "A car.")])

    truth = load_ground_truth([train[0], val[0]], [train[1], val[1]])
    result = chair([(1, "A dog, a couch and a bicycle."), (2, "A car and a dog.")], truth.objects)

    # bicycle is in image 1's truth only through the second captions file; image 2 only in the second instances
    assert truth.objects == {1: {"dog", "couch", "bicycle"}, 2: {"car"}}
    assert (result.mentions, result.hallucinated_mentions, result.hallucinated_answers) == (5, 1, 1)
    only_first = load_ground_truth(train[0], train[1])
    assert only_first.objects == {1: {"dog", "couch"}}


class ExtractionServer(ThreadingHTTPServer):
    """A chat-completions server that answers each answer's canned object list; records the prompts."""

    daemon_threads = True

    def __init__(self, replies: dict[str, str]):
        super().__init__(("127.0.0.1", 0), ExtractionHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.replies, self.prompts = replies, []


class ExtractionHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        self.server.prompts.append((prompt, body["temperature"]))
        reply = next(text for answer, text in self.server.replies.items() if answer in prompt)
        send_json(self, chat_completion(body["model"], reply))

    def log_message(self, *args):
        pass


def test_gpt_extraction_reads_the_objects_a_served_model_lists():
    answers = [
        "A man rides a bicycle next to a red car on the street.",
        "Two cups of coffee sit on a wooden dining table.",
        "A cat.",  # three words or fewer: no request, no objects
    ]
    replies = {
        answers[0]: '["man", "bicycle", "car", "street"]',
        answers[1]: 'Here they are:\n```json\n["cups", "coffee", "dining table", "cup"]\n```',
    }
    server = ExtractionServer(replies)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        model = OpenAIBackend("gpt-3.5-turbo-0613", server.url, timeout=5, max_retries=0)
        mentions = extract_mentions(model, [QUESTION] * 3, answers)
    finally:
        server.shutdown()
        server.server_close()

    assert mentions == [
        [("man", "person"), ("bicycle", "bicycle"), ("car", "car")],
        [("cup", "cup"), ("dining table", "dining table")],  # "cups" and "cup" are one object
        [],
    ]
    assert sorted(prompt for prompt, _ in server.prompts) == sorted(
        PROMPT.replace("{question}", QUESTION).replace("{answer}", answer) for answer in answers[:2]
    )
    assert {temperature for _, temperature in server.prompts} == {0.0}
    truth = {1: {"person", "bicycle"}, 2: {"cup"}, 3: {"cat"}}
    result = chair(zip([1, 2, 3], answers, strict=True), truth, mentions)
    assert (result.answers_with_objects, result.hallucinated_answers, result.hallucinated_mentions) == (2, 2, 2)


def test_object_halbench_answers_with_3_beams_by_default_and_greedy_as_an_option():
    base = {"max_new_tokens": 64}

    assert eval_sampling(base | {"coco_instances": "instances.json"}).num_beams == 3
    assert eval_sampling(base | {"coco_instances": ["a.json", "b.json"], "eval_num_beams": 1}).num_beams == 1
    assert eval_sampling(base).num_beams == 1  # evaluations without COCO ground truth stay greedy


def test_every_file_of_a_coco_list_must_lie_under_data_dir(settings, tmp_path):
    from django import forms

    from webapp.iterations.forms import checked_config

    settings.DATA_DIR = tmp_path
    listed = {"coco_instances": ["instances_train2014.json", "instances_val2014.json"]}

    assert checked_config(dict(listed)) == listed
    with pytest.raises(forms.ValidationError, match="outside DATA_DIR"):
        checked_config({"coco_instances": ["instances_train2014.json", "/etc/passwd"]})
