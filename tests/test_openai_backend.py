"""OpenAIBackend against a real HTTP server on 127.0.0.1 that speaks chat completions."""

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling
from labeling.backends.openai_backend import OpenAIBackend, OpenAIBackendError, image_data_url

# The server's vocabulary: a word-level tokenizer where "\n" is a token of its own, "Yes" and " Yes" two others.
VOCAB = ["\n", "Yes", "yes", " Yes", "No", "no", " No", "Maybe", *(f" w{i}" for i in range(30))]


def tokenize(text: str) -> list[int]:
    if text.startswith("\n"):
        return [0, *tokenize(text[1:])]
    return [VOCAB.index(text) if text in VOCAB else VOCAB.index("Maybe")] if text else []  # no " yes" here


class ChatServer(ThreadingHTTPServer):
    """Answers `question #seed`, or for a question with canned logits (`logits[question]`: token -> logit, the
    rest of the vocabulary impossible) the first token's top log-probs after the request's `logit_bias`, as
    OpenAI's servers and vLLM's processed log-probs do; serves vLLM's /tokenize and /detokenize; records every
    request.

    `failures` are (status, headers) answered first, one per request; `delay` holds each answer back.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.requests = []
        self.failures = []
        self.logits = {}
        self.with_logprobs = True
        self.delay = 0.0
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def answer(self, path, body):
        if path == "/tokenize":
            return 200, {}, {"tokens": tokenize(body["prompt"]), "count": 1, "max_model_len": 4096}
        if path == "/detokenize":
            return 200, {}, {"prompt": "".join(VOCAB[token] for token in body["tokens"])}
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, headers, {"error": {"message": f"canned {status}", "type": "server_error"}}
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else content[-1]["text"]
        choice = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs"):
            bias = {VOCAB[int(token)]: value for token, value in (body.get("logit_bias") or {}).items()}
            logits = {token: logit + bias.get(token, 0) for token, logit in self.logits[text].items()}
            total = math.log(sum(math.exp(logit) for logit in logits.values()))
            ranked = sorted(logits.items(), key=lambda item: -item[1])[: body["top_logprobs"]]
            top = [(token, logit - total) for token, logit in ranked]
            choice["message"] = {"role": "assistant", "content": top[0][0]}
            if self.with_logprobs:
                entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
                choice["logprobs"] = {"content": [{**entries[0], "top_logprobs": entries}]}
        else:
            choice["message"] = {"role": "assistant", "content": f"{text} #{body.get('seed')}"}
        return (
            200,
            {},
            {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]},
        )


class ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append(
                {"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
            )
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            status, headers, payload = server.answer(self.path, body)
        server.released.wait(server.delay)
        with server.lock:
            server.in_flight -= 1
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    server = ChatServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def images(tmp_path):
    png, jpeg = tmp_path / "red.png", tmp_path / "blue.jpg"
    Image.new("RGB", (8, 8), "red").save(png)
    Image.new("RGB", (8, 8), "blue").save(jpeg)
    return png, jpeg


def backend_for(server, **options):
    return OpenAIBackend("tiny-llava", server.url, **{"timeout": 5, "max_retries": 0, **options})


def image_parts(body):
    return [part["image_url"]["url"] for part in body["messages"][0]["content"] if part["type"] == "image_url"]


def test_it_generates_one_seeded_request_per_candidate(server, images):
    png, jpeg = images
    backend = backend_for(server, concurrency=4)
    requests = [GenerationRequest(png, "What is red?", (3, 1, 2)), GenerationRequest(jpeg, "What is blue?", (7,))]

    texts = backend.generate(requests, Sampling(temperature=0.7, top_p=0.9, max_new_tokens=64))

    assert texts == [["What is red? #3", "What is red? #1", "What is red? #2"], ["What is blue? #7"]]
    assert len(server.requests) == 4
    for request in server.requests:
        body = request["body"]
        assert request["path"] == "/v1/chat/completions"
        assert body["model"] == "tiny-llava"
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 64)
        assert "n" not in body
    by_seed = {request["body"]["seed"]: request["body"] for request in server.requests}
    assert image_parts(by_seed[1]) == [f"data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"]
    assert image_parts(by_seed[7]) == [f"data:image/jpeg;base64,{base64.b64encode(jpeg.read_bytes()).decode()}"]


def test_it_keeps_several_requests_in_flight(server, images):
    server.delay = 0.1
    backend = backend_for(server, concurrency=4)

    texts = backend.generate([GenerationRequest(images[0], "Why?", (1, 2, 3, 4))], Sampling())

    assert texts == [["Why? #1", "Why? #2", "Why? #3", "Why? #4"]]
    assert server.max_in_flight > 1


CAT, DOG = "Is there a cat? Please answer yes or no.", "Is there a dog? Please answer yes or no."


def logits(**probabilities) -> dict:
    """Logits whose softmax gives these probabilities ("_Yes" stands for " Yes")."""
    return {token.replace("_", " "): math.log(p) for token, p in probabilities.items()}


def test_it_asks_for_one_token_per_word_with_a_logit_bias(server, images):
    png, _ = images
    server.logits = {
        CAT: logits(Yes=0.3, yes=0.1, _Yes=0.4, No=0.15, no=0.05),
        DOG: logits(No=0.5, Yes=0.2, _Yes=0.3),
    }

    verdicts = backend_for(server).yes_no([PolarQuery(png, CAT), PolarQuery(png, DOG)])

    # P(yes) = p(Yes) + p(yes), P(no) = p(No) + p(no), divided by the four's total (0.6 and 0.7) by the bias
    assert (verdicts[0].p_yes, verdicts[0].p_no) == (pytest.approx(0.4 / 0.6), pytest.approx(0.2 / 0.6))
    assert (verdicts[1].p_yes, verdicts[1].p_no) == (pytest.approx(0.2 / 0.7), pytest.approx(0.5 / 0.7))
    assert verdicts[0].accepted and not verdicts[1].accepted  # " Yes" would have made the dog a yes
    chats = [request["body"] for request in server.requests if request["path"] == "/v1/chat/completions"]
    assert len(chats) == 2
    for body in chats:
        assert (body["max_tokens"], body["logprobs"], body["top_logprobs"], body["temperature"]) == (1, True, 4, 0.0)
        assert body["logit_bias"] == {str(VOCAB.index(word)): 100 for word in ("Yes", "yes", "No", "no")}
        assert image_parts(body)[0].startswith("data:image/png;base64,")


def test_a_verdict_does_not_depend_on_the_top_20(server, images):
    # 30 other tokens are each far likelier than yes or no: without the bias neither is among the top 20
    others = {f" w{i}": 10.0 for i in range(30)}
    server.logits = {CAT: others | {"Yes": -2.0, "No": -3.0}, DOG: others | {"Yes": -3.0, "no": -2.5}}

    cat, dog = backend_for(server).yes_no([PolarQuery(images[0], CAT), PolarQuery(images[0], DOG)])

    assert cat.accepted and cat.p_yes / cat.p_no == pytest.approx(math.e)
    assert not dog.accepted and dog.p_no / dog.p_yes == pytest.approx(math.exp(0.5))


def test_an_option_counts_the_spelling_after_a_space_too(server, images):
    server.logits = {DOG: logits(No=0.5, Yes=0.2, _Yes=0.3)}

    [verdict] = backend_for(server, yes_no_variants=True).yes_no([PolarQuery(images[0], DOG)])

    assert (verdict.p_yes, verdict.p_no) == (pytest.approx(0.5), pytest.approx(0.5))
    [body] = [request["body"] for request in server.requests if request["path"] == "/v1/chat/completions"]
    assert set(body["logit_bias"]) == {str(VOCAB.index(word)) for word in ("Yes", " Yes", "yes", "No", " No", "no")}


def test_it_says_so_when_the_server_ignores_the_bias(server, images):
    server.logits = {CAT: {" w1": 0.0}}

    with pytest.raises(OpenAIBackendError, match="answered ' w1', not yes or no: it ignored logit_bias"):
        backend_for(server).yes_no([PolarQuery(images[0], CAT)])


def test_it_says_so_when_the_server_sends_no_logprobs(server, images):
    server.logits = {"Is it red?": {"Yes": 0.0}}
    server.with_logprobs = False

    with pytest.raises(OpenAIBackendError, match="returned no logprobs"):
        backend_for(server).yes_no([PolarQuery(images[0], "Is it red?")])


def test_it_completes_text_without_an_image_on_the_text_model(server):
    backend = backend_for(server, text_model="tiny-lm")

    texts = backend.complete(["Split this.", "And this."], Sampling(temperature=0.2, top_p=0.9, max_new_tokens=256))

    assert texts == ["Split this. #0", "And this. #0"]
    bodies = sorted((request["body"] for request in server.requests), key=lambda body: body["messages"][0]["content"])
    assert bodies[0]["messages"] == [{"role": "user", "content": "And this."}]
    assert {body["model"] for body in bodies} == {"tiny-lm"}
    assert (bodies[0]["temperature"], bodies[0]["top_p"], bodies[0]["max_tokens"]) == (0.2, 0.9, 256)


def test_it_sends_a_placeholder_key_when_none_is_given(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    backend_for(server).complete(["Hi."], Sampling())

    assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"


def test_it_retries_server_errors_with_backoff(server):
    server.failures = [(500, {}), (429, {"retry-after-ms": "10"})]
    backend = backend_for(server, max_retries=2)

    started = time.monotonic()
    texts = backend.complete(["Hi."], Sampling())

    assert texts == ["Hi. #0"]
    assert len(server.requests) == 3
    assert time.monotonic() - started >= 0.3  # the client's backoff after the 500 is 0.375 to 0.5 s


def test_it_names_status_and_model_when_retries_run_out(server):
    server.failures = [(503, {"retry-after-ms": "1"})] * 5

    with pytest.raises(OpenAIBackendError) as raised:
        backend_for(server, max_retries=2).complete(["Hi."], Sampling())

    message = str(raised.value)
    assert "HTTP 503 (after 2 retries)" in message
    assert "'tiny-llava'" in message and server.url in message
    assert len(server.requests) == 3


def test_it_does_not_retry_a_client_error(server):
    server.failures = [(404, {})]

    with pytest.raises(OpenAIBackendError, match="HTTP 404: .*canned 404"):
        backend_for(server, max_retries=3).complete(["Hi."], Sampling())

    assert len(server.requests) == 1


def test_it_gives_up_on_a_server_slower_than_the_timeout(server):
    server.delay = 5
    backend = backend_for(server, timeout=0.2)

    started = time.monotonic()
    with pytest.raises(OpenAIBackendError, match="no answer within 0.2 s"):
        backend.complete(["Hi."], Sampling())

    assert time.monotonic() - started < 2


def test_it_reports_a_server_that_is_not_there():
    with pytest.raises(OpenAIBackendError, match="cannot connect"):
        OpenAIBackend("tiny-llava", "http://127.0.0.1:9/v1", max_retries=0).complete(["Hi."], Sampling())


def test_it_reencodes_other_image_formats_as_png(tmp_path):
    path = tmp_path / "green.bmp"
    Image.new("RGB", (5, 3), "green").save(path)

    url = image_data_url(path)

    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        assert (image.format, image.size) == ("PNG", (5, 3))
