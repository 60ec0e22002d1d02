"""A scripted OpenAI-compatible chat-completions server on loopback, for tests.

It implements POST /v1/chat/completions well enough for the `openai` client: each request is
recorded (JSON body and headers) and answered by the next step of a script, or by a function
of the request once the script is used up. Streamed requests (`"stream": true`) get server-sent
events, with a final usage chunk when `stream_options.include_usage` asks for it, as OpenAI,
vLLM and llama.cpp send them. `response_format` (a JSON schema) is recorded; a server made with
`rejects_response_format=True` answers HTTP 400 to it, like servers without structured output;
one made with `rejects_json_schema=True` answers `{"type": "json_schema"}` with HTTP 500 and
llama-cpp-python's validation message (0.3.x takes only `{"type": "json_object", "schema": ...}`).
`copy_example` answers like a small model that copies the prompt's sample answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status and this body (a JSON-serialisable object)."""

    code: int
    body: Any = None


@dataclass(frozen=True)
class Hang:
    """Answer nothing for `seconds` (the client should time out), then close."""

    seconds: float


@dataclass(frozen=True)
class Answer:
    """A normal completion with `content`; `finish_reason` "length" means cut off; `usage` the
    (prompt, completion) tokens reported."""

    content: str | None
    finish_reason: str = "stop"
    usage: tuple[int, int] = (1, 1)


Step = Union[str, Status, Hang, Answer, Callable[[dict[str, Any], dict[str, str]], Any]]


@dataclass(frozen=True)
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def response_format(self) -> Any:
        """The JSON schema request the client sent (None without one)."""
        return self.body.get("response_format")

    @property
    def text(self) -> str:
        """All message contents, joined: what the model was shown."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class FakeChatServer:
    """`with FakeChatServer(script, fallback) as server: ... server.base_url ... server.requests`."""

    def __init__(self, script: Sequence[Step] = (), fallback: Step | None = None, *,
                 rejects_response_format: bool = False, rejects_json_schema: bool = False) -> None:
        self._script = list(script)
        self.rejects_response_format = rejects_response_format
        self.rejects_json_schema = rejects_json_schema
        self.closed_early = 0           # streams whose client hung up before the end
        self._fallback = fallback
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                body = json.loads(raw or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if server.rejects_response_format and "response_format" in body:
                    server.requests.append(Recorded(body, headers))
                    self._send(400, {"error": {"message": "response_format is not supported"}})
                    return
                if server.rejects_json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                    server.requests.append(Recorded(body, headers))
                    self._send(500, {"error": {"message": _LLAMA_CPP_PYTHON_500, "type": "internal_server_error"}})
                    return
                step = server._next(Recorded(body, headers))
                if callable(step):
                    step = step(body, headers)
                if isinstance(step, Hang):
                    server._closing.wait(step.seconds)
                    self.close_connection = True
                    return
                if isinstance(step, Status):
                    self._send(step.code, step.body if step.body is not None else {"error": {"message": "scripted"}})
                    return
                answer = step if isinstance(step, Answer) else Answer(str(step))
                if body.get("stream"):
                    self._stream(answer, body)
                    return
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": answer.finish_reason,
                                 "message": {"role": "assistant", "content": answer.content}}],
                    "usage": _usage(answer),
                })

            def _stream(self, answer: Answer, body: dict[str, Any]) -> None:
                """Server-sent events, a few characters per chunk; ends the connection after."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {"id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion.chunk", "created": 0,
                        "model": body.get("model", "")}
                content = answer.content or ""
                pieces = [content[i:i + 16] for i in range(0, len(content), 16)]
                chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece},
                                                "finish_reason": None}]} for piece in pieces]
                chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": answer.finish_reason}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunks.append({**base, "choices": [], "usage": _usage(answer)})
                try:
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.closed_early += 1

            def _send(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-llm", daemon=True)

    def _next(self, recorded: Recorded) -> Step:
        """The script's next step (or the fallback), recording the request."""
        with self._lock:
            self.requests.append(recorded)
            if self._script:
                return self._script.pop(0)
        if self._fallback is None:
            return Status(500, {"error": {"message": "script exhausted"}})
        return self._fallback

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


# What llama-cpp-python 0.3.36's server answers (HTTP 500) to OpenAI's json_schema response_format.
_LLAMA_CPP_PYTHON_500 = ("1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                         "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}")


def copy_example(body: dict[str, Any], headers: dict[str, str]) -> str:
    """The sample answer of the prompt (the JSON line after "like this:"), as a small model copies it."""
    text = str(body["messages"][-1]["content"])
    after = text.split("like this:", 1)[1].strip()
    return after.splitlines()[0]


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
