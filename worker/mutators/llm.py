"""The `llm` mutator: asks an OpenAI-compatible chat-completions endpoint for one edit.

Works with hosted APIs and with a server on the volunteer's own GPU (vLLM, llama.cpp's
server, Ollama): all speak POST {base_url}/chat/completions. The model sees program.md, the
current target, the swarm memory and the output contract (prompt.py); its answer is parsed and
applied by edits.py. Anything unusable — an HTTP error, a timeout, an answer in the wrong
format, edits that do not apply, a Python target that no longer compiles — is retried up to
`retries` times (the model is told what was wrong), then reported as a MutatorError with the
last reason: the worker records a `mutator-error` result and goes on.

The API key is read from the environment variable *named* by `api_key_env`, at the moment of
the request, and is scrubbed from every message this module produces: it never reaches a log,
a result or an exception.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from autoswarm.worker.mutators.base import (
    MutationOutcome,
    MutationRequest,
    MutatorConfigError,
    MutatorError,
    reject_unknown_options,
)
from autoswarm.worker.mutators.edits import (
    EditApplyError,
    EditError,
    apply_edit_blocks,
    describe_change,
    match_line_endings,
    one_line,
    parse_description,
    parse_edit_blocks,
    parse_whole_file,
)
from autoswarm.worker.mutators.prompt import (
    OUTPUT_EDITS,
    OUTPUT_FORMATS,
    OUTPUT_WHOLE_FILE,
    PromptInputs,
    chat_messages,
    retry_message,
)

log = logging.getLogger("autoswarm.worker.llm")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Statuses worth asking again: the server is busy, restarting or rate-limiting. Other 4xx
# (bad key, unknown model, prompt too long) will not get better by repeating the request.
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
_MAX_RETRY_DELAY = 30.0
_BODY_CHARS = 300          # of an error response, in a reason
_CANCEL_POLL_SECONDS = 0.2
_MIN_SCRUB_CHARS = 6       # shorter "keys" are placeholders; scrubbing them would mangle text
_NO_KEY = "no-key"         # local servers ignore the key, but the client must send something


class _Transient(Exception):
    """A failed request worth repeating as is (after a delay)."""


@dataclass(frozen=True)
class LlmMutator:
    """The `llm` mutator, configured from a study's `[mutator]` table and worker overrides.

    Options: `model` (required), `base_url` (default: the openai package's, i.e. OpenAI's API
    or $OPENAI_BASE_URL), `api_key_env` (the NAME of the environment variable holding the key;
    empty: send no key, as local servers need none), `temperature` (0-2, default 0.7),
    `max_tokens` (default 4096), `request_timeout` (seconds per request, default 300),
    `retries` (extra attempts after a failure, default 3), `retry_delay` (seconds before the
    first retry of a failed request, doubling, default 2), `output` ("edits" for SEARCH/REPLACE
    blocks, or "whole-file"), `check_syntax` (compile a .py target before accepting the edit,
    default true).
    """

    kind: ClassVar[str] = "llm"
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "model", "base_url", "api_key_env", "temperature", "max_tokens", "request_timeout", "retries",
        "retry_delay", "output", "check_syntax",
    )

    model: str
    base_url: str = ""
    api_key_env: str = ""
    temperature: float = 0.7
    max_tokens: int = 4096
    request_timeout: float = 300.0
    retries: int = 3
    retry_delay: float = 2.0
    output: str = OUTPUT_EDITS
    check_syntax: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise MutatorConfigError(
                'mutator.model: the llm mutator needs a model name, e.g. `model = "gpt-4o-mini"` in study.toml '
                "or `--llm-model qwen2.5-coder:7b` on the worker"
            )
        if not isinstance(self.base_url, str) or (self.base_url and not re.match(r"^https?://", self.base_url)):
            raise MutatorConfigError(
                f"mutator.base_url: expected an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}"
            )
        if not isinstance(self.api_key_env, str) or (self.api_key_env and not _ENV_NAME.match(self.api_key_env)):
            # Never echo the value: the usual mistake is pasting the key itself here.
            raise MutatorConfigError(
                "mutator.api_key_env: expected the NAME of an environment variable (letters, digits, _), "
                "such as OPENAI_API_KEY, not the key itself (the value given is not shown)"
            )
        _check_number("temperature", self.temperature, low=0.0, high=2.0, example="0.7")
        _check_int("max_tokens", self.max_tokens, low=1, example="4096")
        _check_number("request_timeout", self.request_timeout, low=0.0, high=None, example="300",
                      exclusive_low=True)
        _check_int("retries", self.retries, low=0, example="3")
        _check_number("retry_delay", self.retry_delay, low=0.0, high=None, example="2")
        if self.output not in OUTPUT_FORMATS:
            raise MutatorConfigError(
                f"mutator.output: expected one of {', '.join(repr(f) for f in OUTPUT_FORMATS)}, got {self.output!r}"
            )
        if not isinstance(self.check_syntax, bool):
            raise MutatorConfigError(f"mutator.check_syntax: expected true or false, got {self.check_syntax!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> LlmMutator:
        """Build from a `[mutator]` table merged with worker overrides (`kind` is ignored)."""
        reject_unknown_options(cls.kind, options, cls.OPTIONS)
        known = {"model": "", **{key: options[key] for key in cls.OPTIONS if key in options}}
        return cls(**known)  # type: ignore[arg-type]  # __post_init__ checks every value

    # -- mutate ---------------------------------------------------------------------------

    def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Ask the model for an edit, apply it to the target in place, return its description."""
        key = self._api_key()
        try:
            return self._mutate(request, key)
        except MutatorError as exc:
            reason = scrub(str(exc), key)
        # Raised outside the handler, so that no chained exception (__context__) carries the
        # unscrubbed text into a traceback.
        raise MutatorError(reason)

    def _api_key(self) -> str:
        if not self.api_key_env:
            return ""
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise MutatorError(
                f"the environment variable {self.api_key_env} (api_key_env) is not set on this worker; "
                f"export {self.api_key_env}=<your key>, or point --llm-api-key-env at the variable holding it"
            )
        return key

    def _mutate(self, request: MutationRequest, key: str) -> MutationOutcome:
        if request.cancel is not None and request.cancel.is_set():
            raise MutatorError("cancelled before the edit")
        path = request.workdir / request.target
        source = _read_target(path, request.target)
        base = chat_messages(PromptInputs(request.program, request.target, source, request.memory), self.output)
        messages = base
        client = self._client(key)
        last_problem = ""
        attempts = self.retries + 1
        delay = self.retry_delay
        try:
            for attempt in range(1, attempts + 1):
                if request.cancel is not None and request.cancel.is_set():
                    raise MutatorError("cancelled between attempts")
                try:
                    answer, truncated = self._complete(client, messages, request.cancel)
                except _Transient as exc:
                    last_problem = str(exc)
                    log.warning("llm request %d/%d failed: %s", attempt, attempts, scrub(last_problem, key))
                    if attempt < attempts:
                        _pause(delay, request.cancel)
                        delay = min(delay * 2, _MAX_RETRY_DELAY)
                    continue
                try:
                    new_source, description = self._apply(answer, source, request.target)
                except EditError as exc:
                    last_problem = str(exc)
                    if truncated:
                        last_problem += f" (the answer was cut off at max_tokens={self.max_tokens})"
                    log.warning("llm answer %d/%d unusable: %s", attempt, attempts, scrub(last_problem, key))
                    # Tell the model what was wrong; only the latest exchange, so the prompt stays bounded.
                    messages = [*base, {"role": "assistant", "content": answer},
                                {"role": "user", "content": retry_message(last_problem, self.output)}]
                    continue
                _write_target(path, request.target, new_source)
                return MutationOutcome(description=scrub(description, key))
        finally:
            client.close()
        raise MutatorError(f"no usable edit from model {self.model} after {attempts} attempt(s); "
                           f"last problem: {last_problem}")

    def _client(self, key: str) -> Any:
        try:
            import openai
        except ImportError:
            raise MutatorError(
                "the llm mutator needs the openai package on this worker: pip install 'autoswarm[llm]'"
            ) from None
        # max_retries=0: this module counts attempts itself, so `retries` means what it says.
        return openai.OpenAI(base_url=self.base_url or None, api_key=key or _NO_KEY,
                             timeout=self.request_timeout, max_retries=0)

    def _complete(self, client: Any, messages: list[dict[str, str]],
                  cancel: threading.Event | None) -> tuple[str, bool]:
        """One request: (the answer's text, whether it was cut off). Raises _Transient or MutatorError."""
        import openai

        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["response"] = client.chat.completions.create(
                    model=self.model, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens)
            except BaseException as exc:  # handed to the waiting thread, which classifies it
                box["error"] = exc
            finally:
                done.set()

        # In a thread so that a cancelled lease does not wait out a long request; the abandoned
        # request ends at its timeout (the client is closed, which also cuts it short).
        threading.Thread(target=call, name="llm-request", daemon=True).start()
        while not done.wait(_CANCEL_POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                raise MutatorError("cancelled while waiting for the model")
        error = box.get("error")
        if isinstance(error, openai.APITimeoutError):
            raise _Transient(f"no answer within request_timeout={self.request_timeout:g}s")
        if isinstance(error, openai.APIConnectionError):
            raise _Transient(f"cannot reach {self._where()}: {error}")
        if isinstance(error, openai.APIStatusError):
            body = one_line(_body_text(error), _BODY_CHARS)
            status = error.status_code
            reason = f"HTTP {status} from {self._where()}: {body}"
            if status in _RETRYABLE_STATUS or status >= 500:
                raise _Transient(reason)
            raise MutatorError(reason + _status_hint(status, self.api_key_env))
        if isinstance(error, openai.OpenAIError):
            raise _Transient(f"unusable response from {self._where()}: {error}")
        if error is not None:
            raise MutatorError(f"request to {self._where()} failed: {type(error).__name__}: {error}")
        response = box["response"]
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise _Transient(f"{self._where()} answered without any choice")
        message = choices[0].message
        content = getattr(message, "content", None)
        if not content:
            refusal = getattr(message, "refusal", None)
            raise _Transient("the model refused: " + one_line(refusal) if refusal else "the model's answer was empty")
        return content, choices[0].finish_reason == "length"

    def _apply(self, answer: str, source: str, target: str) -> tuple[str, str]:
        """(new target text, description) from an answer; raises EditError when unusable."""
        if self.output == OUTPUT_WHOLE_FILE:
            new_source = match_line_endings(parse_whole_file(answer), source)
        else:
            new_source = apply_edit_blocks(source, parse_edit_blocks(answer))
        if new_source == source:
            raise EditApplyError("the edit leaves the target unchanged; change something")
        if self.check_syntax and target.endswith(".py"):
            try:
                compile(new_source, target, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                where = f"line {exc.lineno}: " if getattr(exc, "lineno", None) else ""
                raise EditApplyError(f"the edited {target} is not valid Python ({where}{getattr(exc, 'msg', exc)})") \
                    from None
        return new_source, parse_description(answer) or describe_change(source, new_source)

    def _where(self) -> str:
        return self.base_url or "the OpenAI API"


def _pause(seconds: float, cancel: threading.Event | None) -> None:
    """Sleep before a retry; a cancel ends the wait and the mutation."""
    if seconds <= 0:
        return
    if (cancel or threading.Event()).wait(seconds):
        raise MutatorError("cancelled while waiting to retry the model")


def scrub(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` replaced by ***."""
    if len(secret) < _MIN_SCRUB_CHARS:
        return text
    return text.replace(secret, "***")


def _body_text(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body
        return str(message.get("message", message) if isinstance(message, dict) else message)
    if body:
        return str(body)
    return str(getattr(error, "message", "") or error)


def _status_hint(status: int, api_key_env: str) -> str:
    if status in (401, 403):
        where = f"${api_key_env}" if api_key_env else "no key (api_key_env is empty)"
        return f"; the server refused the key: check {where} and --llm-api-key-env"
    if status == 404:
        return "; check the model name and that base_url ends where the API starts (often .../v1)"
    return ""


def _read_target(path: Path, target: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")  # bytes: text mode would rewrite \r\n
    except FileNotFoundError:
        raise MutatorError(f"target {target} not found in the scratch copy") from None
    except UnicodeDecodeError as exc:
        raise MutatorError(f"target {target} is not UTF-8 text ({exc}); the llm mutator edits text files") from None
    except OSError as exc:
        raise MutatorError(f"cannot read target {target}: {exc}") from None


def _write_target(path: Path, target: str, text: str) -> None:
    try:
        path.write_bytes(text.encode("utf-8"))
    except OSError as exc:
        raise MutatorError(f"cannot write target {target}: {exc}") from None


def _check_number(key: str, value: object, *, low: float, high: float | None, example: str,
                  exclusive_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if exclusive_low else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"{'>' if exclusive_low else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise MutatorConfigError(f"mutator.{key}: expected a number {bounds}, e.g. `{key} = {example}`, got {value!r}")


def _check_int(key: str, value: object, *, low: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MutatorConfigError(f"mutator.{key}: expected a whole number >= {low}, e.g. `{key} = {example}`, "
                                 f"got {value!r}")
