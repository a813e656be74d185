"""MMHal-Bench judged by an OpenAI-compatible server on 127.0.0.1 that answers as a judge would.

Five questions, the judge's replies and the ratings the reference's parsing reads from them:
- attribute: "... Rating: 5, very informative, no hallucination" -> 5
- counting:  "Wrong count.\\nRATING: 1" -> 1 (case does not matter)
- attribute: "I cannot decide." -> no rating: counts as 0 (unparsed)
- relation:  "Rating: 4" -> 4
- other:     "Rating: 2 or Rating: 6" -> two ratings: counts as 0 (unparsed)
average = (5 + 1 + 0 + 4 + 0) / 5 = 2.0; hallucination rate = ratings < 3: (1, 0, 0) -> 3 / 5 = 0.6
per type: attribute (5 + 0) / 2 = 2.5, counting 1, relation 4, other 0
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from labeling.backends.openai_backend import OpenAIBackend
from tests.chat_server import chat_completion, send_json
from training.__main__ import main
from training.mmhal import PROMPT_FILE, MMHalFileError, answer_questions, judge, load_questions, parse_rating

REPLIES = {
    "A red car.": "The answer matches. Rating: 5, very informative, no hallucination",
    "Three cats.": "Wrong count.\nRATING: 1",
    "Blue.": "I cannot decide.",
    "The cup is on the table.": "Rating: 4",
    "A sunny beach.": "Rating: 2 or Rating: 6",
}
QUESTIONS = [
    ("attribute", ["Car"], "What colour is the car?", "The car is red.", "A red car."),
    ("counting", ["Cat", "Lynx"], "How many cats are there?", "Two cats.", "Three cats."),
    ("attribute", ["Sky"], "What colour is the sky?", "Grey.", "Blue."),
    ("relation", ["Cup", "Table"], "Where is the cup?", "On the table.", "The cup is on the table."),
    ("other", ["Beach"], "What is the weather?", "Rainy.", "A sunny beach."),
]


class JudgeServer(ThreadingHTTPServer):
    """Chat completions: replies to the prompt by the answer it judges (the text after the prompt's last heading)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.bodies = []


class JudgeHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        answer = prompt.rsplit("### LMM Response to Evaluate\n", 1)[1].strip()
        send_json(self, chat_completion(body["model"], REPLIES[answer]))

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = JudgeServer()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def write_template(folder, with_answers=True):
    """response_template.json as the benchmark ships it (image_src a URL; the picture in images/)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for n, (kind, content, question, truth, answer) in enumerate(QUESTIONS):
        name = f"{n:04d}_photo.jpg"
        Image.new("RGB", (8, 8), "white").save(folder / "images" / name)
        records.append({
            "question_type": kind, "question_topic": "Test", "image_id": f"id{n}",
            "image_src": f"https://example.org/photos/{name}", "image_content": content, "question": question,
            "gt_answer": truth, "model_answer": answer if with_answers else "",
        })  # fmt: skip
    (folder / "response_template.json").write_text(json.dumps(records))
    return folder / "response_template.json"


def test_the_judge_rates_each_answer_and_the_figures_are_the_references(server, tmp_path):
    questions = load_questions(write_template(tmp_path))
    assert questions[0]["image"] == tmp_path / "images" / "0000_photo.jpg"
    result = judge(OpenAIBackend("gpt-4-0314", server.url, timeout=5, max_retries=0), questions,
                   [q[4] for q in QUESTIONS])  # fmt: skip

    assert [row["rating"] for row in result["judged"]] == [5, 1, None, 4, None]
    assert result["score"] == pytest.approx(2.0)
    assert result["hallucination_rate"] == pytest.approx(0.6)
    assert result["unparsed"] == 2
    assert result["per_type"] == {"attribute": 2.5, "counting": 1.0, "relation": 4.0, "other": 0.0}
    second = next(body for body in server.bodies if "Three cats." in body["messages"][0]["content"])  # concurrent
    assert second["model"] == "gpt-4-0314" and second["temperature"] == 0.0
    expected = PROMPT_FILE.read_text().format("Cat, Lynx", "How many cats are there?", "Two cats.", "Three cats.")
    assert second["messages"] == [{"role": "user", "content": expected}]
    assert expected.startswith("Please act as an impartial and objective judge")


def test_the_rating_is_parsed_as_the_reference_parses_it():
    assert parse_rating("Explanation ... Rating: 6, very informative") == 6
    assert parse_rating("rating:3") is None  # the reference looks for "rating: s", with the space
    assert parse_rating("Rating: 0 ... Rating: 0") == 0  # one rating, said twice
    assert parse_rating("Rating: 1 then Rating: 2") is None


def test_the_command_judges_a_filled_template(server, tmp_path, capsys):
    template = write_template(tmp_path)
    argv = ["mmhal", "--responses", str(template), "--judge-model", "judge", "--base-url", server.url]
    assert main([*argv, "--api-key", "none"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["score"], printed["hallucination_rate"]) == (2.0, 0.6)


def test_a_bad_template_or_a_missing_picture_is_named(tmp_path):
    (tmp_path / "response_template.json").write_text(json.dumps([{"question": "Q?"}]))
    with pytest.raises(MMHalFileError, match="response_template.json: entry 0 has no 'question_type'"):
        load_questions(tmp_path / "response_template.json")
    questions = load_questions(write_template(tmp_path))
    (tmp_path / "images" / "0001_photo.jpg").unlink()
    with pytest.raises(MMHalFileError, match=r"0001_photo.jpg: no such image \(entry 1"):
        answer_questions(None, questions, sampling=None)
