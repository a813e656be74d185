"""A local chat-completions server for tests of the OpenAI-compatible paths: real HTTP, replies from a function."""

import json


def chat_completion(model: str, content: str) -> dict:
    """An OpenAI chat.completion body with one assistant message."""
    message = {"role": "assistant", "content": content}
    choice = {"index": 0, "finish_reason": "stop", "message": message, "logprobs": None}
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}


def send_json(handler, payload: dict) -> None:
    """Answer a BaseHTTPRequestHandler's request with `payload` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
