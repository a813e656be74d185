"""AMBER and MMHal-Bench as an evaluation runs them: files under DATA_DIR named by the config, the figures at the
evaluation's top level (what the trend charts plot) and the answers written in the benchmarks' own formats.

The files and answers are those of tests/test_amber.py and tests/test_mmhal.py, so the figures are theirs:
AMBER CHAIR 0.4, Cover 0.8, Hal 2/3, Cog 0.5, accuracy 4/7, F1 0.75; MMHal-Bench score 2.0, hallucination 0.6.
"""

import json

import pytest

import training.amber
from tests.test_amber import RESPONSES, write_amber
from tests.test_mmhal import QUESTIONS, server, write_template  # noqa: F401  (server: the judge fixture)
from training.amber import rule_tags
from webapp.iterations.metric_names import figures as figure_table
from webapp.jobs.benchmarks import answer_benchmarks, benchmark_sampling, question_count, wanted


class CannedPolicy:
    """Answers AMBER's queries with tests/test_amber.py's responses and MMHal-Bench's with test_mmhal's."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, requests, sampling):
        return [[self.answers[request.question] for _ in request.seeds] for request in requests]


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    amber = write_amber(settings.DATA_DIR / "amber" / "data")
    (amber / "query").mkdir()
    (settings.DATA_DIR / "amber" / "image").mkdir()
    queries = [{"id": r["id"], "image": "AMBER_1.jpg", "query": f"question {r['id']}"} for r in RESPONSES]
    (amber / "query" / "query_all.json").write_text(json.dumps(queries))
    write_template(settings.DATA_DIR / "mmhal")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(settings.DATA_DIR / "amber" / "image" / "AMBER_1.jpg")
    return settings.DATA_DIR


CONFIG = {
    "amber_data": "amber/data",
    "amber_images": "amber/image",
    "mmhal_data": "mmhal",
    "mmhal_judge": "judge",
    "seed": 0,
    "generate_batch": 4,
    "max_new_tokens": 16,
}


def test_both_benchmarks_run_and_their_figures_reach_the_evaluation(data_dir, server, settings, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(training.amber, "default_tagger", lambda: rule_tags)  # where NLTK's tagger is installed
    settings.JUDGE_BASE_URL = server.url
    answers = {f"question {r['id']}": r["response"] for r in RESPONSES} | {q[2]: q[4] for q in QUESTIONS}
    done = []
    places = {key: (tmp_path / f"{key}.json", f"{key}.json") for key in ("amber", "mmhal")}

    figures, details = answer_benchmarks(CONFIG, CannedPolicy(answers), benchmark_sampling(CONFIG), done.append,
                                         places.get)  # fmt: skip

    assert question_count(CONFIG) == 15 and done[-1] == 15
    assert figures == pytest.approx({
        "amber_chair": 0.4, "amber_cover": 0.8, "amber_hal": 2 / 3, "amber_cog": 0.5, "amber_accuracy": 4 / 7,
        "amber_f1": 0.75, "amber_existence_f1": 2 / 3, "amber_attribute_f1": 2 / 3, "amber_relation_f1": 1.0,
        "mmhal_score": 2.0, "mmhal_hallucination_rate": 0.6,
    })  # fmt: skip
    assert details["mmhal"]["judge"] == "judge" and details["amber"]["answers_file"] == "amber.json"
    assert json.loads((tmp_path / "amber.json").read_text())[3] == {"id": 4, "response": "No"}
    mmhal = json.loads((tmp_path / "mmhal.json").read_text())
    assert mmhal[1]["model_answer"] == "Three cats." and mmhal[1]["judge_reply"] == "Wrong count.\nRATING: 1"
    table = dict(figure_table({"eval": figures}))["Held-out evaluation"]
    assert ("AMBER: nouns hallucinated (CHAIR)", "40.0%") in [(f.label, f.value) for f in table]
    assert ("MMHal-Bench: the judge's average rating (0-6)", "2") in [(f.label, f.value) for f in table]


def test_a_half_configured_benchmark_or_unknown_query_file_is_refused():
    with pytest.raises(ValueError, match="AMBER needs config amber_images too"):
        wanted({"amber_data": "amber/data"})
    with pytest.raises(ValueError, match="MMHal-Bench needs config mmhal_judge too"):
        wanted({"mmhal_data": "mmhal"})
    with pytest.raises(ValueError, match="amber_queries must be one of"):
        wanted({"amber_queries": "everything"})
    assert wanted({}) == []
