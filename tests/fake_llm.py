"""A scripted OpenAI-compatible chat-completions server on loopback, for tests.

It implements POST /v1/chat/completions well enough for the `openai` client: each request is
recorded (JSON body and headers) and answered by the next step of a script, or by a function
of the request once the script is used up.
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
    """A normal completion with `content`; `finish_reason` "length" means cut off."""

    content: str | None
    finish_reason: str = "stop"


Step = Union[str, Status, Hang, Answer, Callable[[dict[str, Any], dict[str, str]], Any]]


@dataclass(frozen=True)
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def text(self) -> str:
        """All message contents, joined: what the model was shown."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class FakeChatServer:
    """`with FakeChatServer(script, fallback) as server: ... server.base_url ... server.requests`."""

    def __init__(self, script: Sequence[Step] = (), fallback: Step | None = None) -> None:
        self._script = list(script)
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
                self._send(200, {
                    "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": answer.finish_reason,
                                 "message": {"role": "assistant", "content": answer.content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

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
