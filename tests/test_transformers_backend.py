"""The transformers backend on the tiny models: seed-stable sampling, prefix-cached yes/no scoring."""

import pytest

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling
from labeling.backends.transformers_backend import TransformersBackend
from labeling.sample_images import save_sample_images

pytestmark = pytest.mark.slow

SHORT = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16)
QUESTIONS = [
    "Is it true that there is a man in the image?",
    "Is there a red cup on the table?",
    "Is it true that the cat is sitting on a chair next to a large window?",
    "Does the image show a rocket?",
    "Is the sky blue?",
]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    astronaut, coffee, chelsea = save_sample_images(
        tmp_path_factory.mktemp("images"), ["astronaut", "coffee", "chelsea"]
    )
    return {"astronaut": astronaut, "coffee": coffee, "chelsea": chelsea}


@pytest.fixture(scope="module")
def backend(tiny_models_dir):
    return TransformersBackend(
        tiny_models_dir / "tiny-llava", text_model_path=tiny_models_dir / "tiny-lm", batch_size=4
    )


@pytest.fixture(scope="module")
def small_backend(tiny_models_dir):
    return TransformersBackend(tiny_models_dir / "small-llava", batch_size=4)


def _queries(images):
    """Uneven groups: 5, 2 and 5 questions, interleaved, so chunks split images and mix them."""
    pairs = [(name, q) for name in ["astronaut", "chelsea"] for q in QUESTIONS]
    pairs = pairs[:5] + [("coffee", QUESTIONS[1])] + pairs[5:] + [("coffee", QUESTIONS[4])]
    return [PolarQuery(images[name], f"{q} Please answer yes or no.") for name, q in pairs]


def _assert_close(a, b, tolerance=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.p_yes == pytest.approx(y.p_yes, abs=tolerance)
        assert x.p_no == pytest.approx(y.p_no, abs=tolerance)


def test_it_gives_the_same_candidates_for_the_same_seeds(backend, images):
    request = GenerationRequest(images["coffee"], "Describe the image.", seeds=(0, 1, 2))

    first = backend.generate([request], SHORT)
    second = backend.generate([request], SHORT)

    assert first == second
    assert len(set(first[0])) == 3  # different seeds, different samples


def test_it_gives_a_seed_the_same_text_whatever_shares_its_batch(backend, tiny_models_dir, images):
    target = GenerationRequest(images["coffee"], "Describe the image.", seeds=(7, 3, 11))
    others = [
        GenerationRequest(images["astronaut"], "What is the man wearing on his head in this picture?", (7, 1)),
        GenerationRequest(images["chelsea"], "Is there a cat?", (5,)),
    ]
    alone = backend.generate([target], SHORT)[0]
    one_row_at_a_time = TransformersBackend(tiny_models_dir / "tiny-llava", batch_size=1)

    mixed = backend.generate([others[0], target, others[1]], SHORT)[1]
    reordered = backend.generate([GenerationRequest(target.image, target.question, (11, 7, 3))], SHORT)[0]
    single = one_row_at_a_time.generate([target], SHORT)[0]

    assert mixed == alone
    assert reordered == [alone[2], alone[0], alone[1]]
    assert single == alone


def test_it_stops_after_max_new_tokens(backend, images):
    request = GenerationRequest(images["chelsea"], "Describe the image.", seeds=(0, 1, 2, 3))

    texts = backend.generate([request], Sampling(max_new_tokens=3))[0]

    assert all(0 < len(backend.tokenizer.encode(text, add_special_tokens=False)) <= 3 for text in texts)


def test_it_decodes_greedily_at_temperature_zero(backend, images):
    request = GenerationRequest(images["astronaut"], "Describe the image.", seeds=(0, 1, 2))

    texts = backend.generate([request], Sampling(temperature=0, max_new_tokens=8))[0]

    assert len(set(texts)) == 1


def test_it_scores_a_batch_as_it_scores_each_query_alone(backend, images):
    queries = _queries(images)

    batched = backend.yes_no(queries)
    alone = [backend.yes_no([query])[0] for query in queries]

    _assert_close(batched, alone)


@pytest.mark.parametrize("which", ["backend", "small_backend"])
def test_its_prefix_cache_scores_as_a_full_forward_does(which, request, images):
    engine = request.getfixturevalue(which)
    queries = _queries(images)

    cached = engine.yes_no(queries)
    plain = engine.yes_no_plain(queries)

    _assert_close(cached, plain)
    # The comparison can fail: the answers move with image and question far more than the tolerance.
    assert max(v.p_no for v in plain) - min(v.p_no for v in plain) > 1e-3


def test_it_returns_probabilities(backend, images):
    verdicts = backend.yes_no(_queries(images))

    for verdict in verdicts:
        assert 0 <= verdict.p_yes <= 1
        assert 0 <= verdict.p_no <= 1
        assert verdict.p_yes + verdict.p_no <= 1 + 1e-6


def test_it_finds_single_answer_tokens(backend):
    assert backend.tokenizer.convert_ids_to_tokens(backend.yes_ids) == ["Yes", "yes"]
    assert backend.tokenizer.convert_ids_to_tokens(backend.no_ids) == ["No", "no"]


def test_it_completes_text_prompts_with_the_text_model(backend):
    prompts = ["Describe the cat.", "You are an expert in extracting facts from the given question-answer pair."]

    together = backend.complete(prompts, SHORT)
    alone = [backend.complete([prompt], SHORT)[0] for prompt in prompts]

    assert together == alone
    assert all(text.strip() for text in together)
    assert backend.complete(prompts, SHORT) == together
