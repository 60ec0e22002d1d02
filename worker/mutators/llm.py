"""The `llm` mutator: asks an OpenAI-compatible chat-completions endpoint for one edit.

Works with hosted APIs and with a server on the volunteer's own GPU (vLLM, llama.cpp's
server, Ollama): all speak POST {base_url}/chat/completions. The model sees program.md, the
current target, the swarm memory and the output contract (prompt.py); its answer is parsed and
applied by edits.py. Anything unusable — an HTTP error, a timeout, an answer in the wrong
format, edits that do not apply, a Python target that no longer compiles — is retried up to
`retries` times, then reported as a MutatorError with the last reason: the worker records a
`mutator-error` result and goes on. A retry is a fresh conversation that states the problem;
the bad answer is not replayed (small models copy it).

Requests are streamed: when the time is up or the lease is cancelled the connection is closed,
which stops a local server generating for nobody. `output = "json"` and `"constants"` ask the
server to hold its answer to a JSON schema (`response_format`, or Ollama's `format`); a server
that refuses the schema (a 400/422, or any error naming response_format) is asked with
`{"type": "json_object", "schema": ...}` (llama-cpp-python's form), then without a schema. The
sample answer in those prompts is built from a real line of the target, and the constants
format offers a few constants drawn per task and lists what the swarm already tried. Tokens
are counted from each response's `usage` and reported with the edit.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from autoswarm.worker.mutators.base import (
    MutationOutcome,
    Usage,
    MutationRequest,
    MutatorConfigError,
    MutatorError,
    reject_unknown_options,
)
from autoswarm.worker.mutators.edits import (
    EditApplyError,
    EditBlock,
    EditError,
    apply_edit_blocks,
    describe_change,
    match_line_endings,
    one_line,
    parse_description,
    parse_edit_blocks,
    parse_whole_file,
)
from autoswarm.worker.mutators.params import constant_values, set_constants
from autoswarm.worker.mutators.prompt import (
    CONSTANTS_SCHEMA,
    EDIT_SCHEMA,
    OUTPUT_CONSTANTS,
    OUTPUT_EDITS,
    OUTPUT_FORMATS,
    OUTPUT_JSON,
    OUTPUT_WHOLE_FILE,
    PromptInputs,
    candidate_lines,
    chat_messages,
    edit_settings,
    example_edit,
    example_setting,
    offered_constants,
    tried_edits,
    tried_settings,
)
from autoswarm.worker.mutators.structured import json_edits, json_values

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
_LOGGED_ANSWER_CHARS = 2000
# How a schema reaches the server: OpenAI, vLLM and llama.cpp's llama-server read
# `response_format` {"type": "json_schema"}; llama-cpp-python's server only {"type":
# "json_object", "schema": ...}; Ollama reads `format`; "none" asks for JSON in the prompt only.
STRUCTURED = ("response_format", "json_object", "format", "none")
# What to try when a server refuses a way of sending the schema: json_object only when the
# refusal names it (llama-cpp-python: "Input should be 'text' or 'json_object'"); a server
# that refuses response_format as such is asked with the prompt only.
_SCHEMA_FALLBACK = {"response_format": "json_object", "json_object": "none", "format": "none"}
# An error body that names the schema request: a refusal of it, whatever the status (a 500
# from llama-cpp-python's request validation), not a passing failure.
_SCHEMA_WORDS = re.compile(r"response_format|json_schema|json_object", re.IGNORECASE)


class _SchemaRefused(Exception):
    """The server does not take the JSON schema this way (an HTTP 400/422 to a structured
    request, or any error status whose body names response_format or json_schema).
    `names_json_object`: the refusal names json_object (as a form the server takes)."""

    def __init__(self, reason: str, names_json_object: bool = False) -> None:
        super().__init__(reason)
        self.names_json_object = names_json_object


class _KnownEdit(EditApplyError):
    """The answer is an edit the swarm already tried or is trying (constants format)."""

    def __init__(self, description: str) -> None:
        super().__init__(f"{description} was already tried by the swarm; choose another constant or a different value")
        self.settings = edit_settings(description)


class _Transient(Exception):
    """A failed request worth repeating as is (after a delay)."""


@dataclass(frozen=True)
class LlmMutator:
    """The `llm` mutator, configured from a study's `[mutator]` table and worker overrides.

    Options: `model` (required), `base_url` (default: the openai package's, i.e. OpenAI's API
    or $OPENAI_BASE_URL), `api_key_env` (the NAME of the environment variable holding the key;
    empty: send no key, as local servers need none), `temperature` (0-2, default 0.7),
    `max_tokens` (default 1024: enough for an edit, and a CPU server's single slot is not held
    for minutes), `request_timeout` (seconds per request, default 300), `retries` (extra
    attempts after a failure, default 3), `retry_delay` (seconds before the first retry of a
    failed request, doubling, default 2), `output` ("edits" for SEARCH/REPLACE blocks,
    "whole-file", "json" for edits as JSON, "constants" for new values of the target's
    UPPER_CASE constants — for models too small to edit code), `structured` (how the JSON
    schema is sent: "response_format", "json_object" (llama-cpp-python's server), Ollama's
    "format", or "none"; a server that refuses one is asked the next way), `stop` (strings
    that end the answer), `check_syntax` (compile a .py target before accepting the edit, default true),
    `price` ([USD per million prompt tokens, USD per million completion tokens] of this model,
    for the cost of each edit; default unknown, counted as 0).
    """

    kind: ClassVar[str] = "llm"
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "model", "base_url", "api_key_env", "temperature", "max_tokens", "request_timeout", "retries",
        "retry_delay", "output", "check_syntax", "structured", "stop", "price",
    )

    model: str
    base_url: str = ""
    api_key_env: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    request_timeout: float = 300.0
    retries: int = 3
    retry_delay: float = 2.0
    output: str = OUTPUT_EDITS
    check_syntax: bool = True
    structured: str = "response_format"
    stop: tuple[str, ...] = ()
    price: tuple[float, float] = (0.0, 0.0)

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
        if self.structured not in STRUCTURED:
            raise MutatorConfigError(
                f"mutator.structured: expected one of {', '.join(repr(f) for f in STRUCTURED)}, got {self.structured!r}"
            )
        if not isinstance(self.price, tuple) or len(self.price) != 2 or not all(
                isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p >= 0
                for p in self.price):
            raise MutatorConfigError("mutator.price: expected [USD per million prompt tokens, USD per million "
                                     f"completion tokens], e.g. [0.15, 0.6], got {self.price!r}")
        if not isinstance(self.stop, tuple) or len(self.stop) > 4 or \
                not all(isinstance(item, str) and item for item in self.stop):
            raise MutatorConfigError(f'mutator.stop: expected up to 4 non-empty strings, e.g. ["<|im_end|>"], '
                                     f"got {self.stop!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> LlmMutator:
        """Build from a `[mutator]` table merged with worker overrides (`kind` is ignored)."""
        reject_unknown_options(cls.kind, options, cls.OPTIONS)
        known = {"model": "", **{key: options[key] for key in cls.OPTIONS if key in options}}
        if isinstance(known.get("price"), list):
            known["price"] = tuple(known["price"])
        if isinstance(known.get("stop"), (list, str)):
            known["stop"] = tuple(known["stop"]) if isinstance(known["stop"], list) else (known["stop"],)
        return cls(**known)  # type: ignore[arg-type]  # __post_init__ checks every value

    # -- mutate ---------------------------------------------------------------------------

    def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Ask the model for an edit, apply it to the target in place, return its description."""
        key = self._api_key()
        try:
            return self._mutate(request, key)
        except MutatorError as exc:
            reason, usage = scrub(str(exc), key), exc.usage
        # Raised outside the handler, so that no chained exception (__context__) carries the
        # unscrubbed text into a traceback.
        raise MutatorError(reason, usage=usage)

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
        constants = offered_constants(constant_values(source), request.seed, request.memory) \
            if self.output == OUTPUT_CONSTANTS else []
        # What steers a small model: a sample answer drawn from the target itself, and (constants)
        # the settings the swarm already tried; an answer that repeats a known edit is refused here.
        tried = tried_settings(request.memory, constants)
        known = tried_edits(request.memory) if self.output == OUTPUT_CONSTANTS else set()
        example_line = example_edit(source, request.seed) if self.output == OUTPUT_JSON else None
        example_value = example_setting(constants, request.seed, tried) if constants else None
        inputs = PromptInputs(request.program, request.target, source, request.memory)
        structured = self.structured if self.output in (OUTPUT_JSON, OUTPUT_CONSTANTS) else "none"
        client = self._client(key)
        usage = Usage()
        last_problem = ""
        attempts = self.retries + 1
        delay = self.retry_delay
        attempt = 0
        try:
            while attempt < attempts:
                attempt += 1
                if request.cancel is not None and request.cancel.is_set():
                    raise MutatorError("cancelled between attempts")
                # A fresh conversation every time: the problem is stated, the bad answer is not replayed.
                messages = chat_messages(inputs, self.output, constants, last_problem, example_line=example_line,
                                         example_value=example_value, tried=tried)
                try:
                    answer, truncated, used = self._complete(client, messages, request.cancel, structured)
                except _SchemaRefused as exc:
                    fallback = _SCHEMA_FALLBACK[structured]
                    if fallback == "json_object" and not exc.names_json_object:
                        fallback = "none"
                    log.info("%s refuses the JSON schema as %s (%s); asking with %s", self._where(), structured,
                             scrub(str(exc), key), fallback if fallback != "none" else "the prompt only")
                    structured, attempt = fallback, attempt - 1  # not the model's fault: no attempt lost
                    continue
                except _Transient as exc:
                    last_problem = str(exc)
                    log.warning("llm request %d/%d failed: %s", attempt, attempts, scrub(last_problem, key))
                    if attempt < attempts:
                        _pause(delay, request.cancel)
                        delay = min(delay * 2, _MAX_RETRY_DELAY)
                    continue
                usage = usage + self._priced(used)
                log.debug("llm answer %d/%d (%d chars): %s", attempt, attempts, len(answer),
                          scrub(one_line(answer, _LOGGED_ANSWER_CHARS), key))
                try:
                    new_source, description = self._apply(answer, source, request.target, known)
                except (EditError, MutatorError) as exc:
                    last_problem = str(exc)
                    if isinstance(exc, _KnownEdit):
                        # Listed as tried from now on, and a sample answer that is not.
                        tried = tried + [t for t in exc.settings if t not in tried]
                        example_value = example_setting(constants, request.seed, tried)
                    if truncated:
                        last_problem += f" (the answer was cut off at max_tokens={self.max_tokens})"
                    log.warning("llm answer %d/%d unusable: %s", attempt, attempts, scrub(last_problem, key))
                    continue
                _write_target(path, request.target, new_source)
                return MutationOutcome(description=scrub(description, key), usage=usage)
        finally:
            client.close()
        raise MutatorError(f"no usable edit from model {self.model} after {attempts} attempt(s); "
                           f"last problem: {last_problem}", usage=usage)

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

    def _request(self, messages: list[dict[str, str]], structured: str) -> dict[str, Any]:
        """The keyword arguments of one streamed chat-completions request."""
        request: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": self.temperature,
            "max_tokens": self.max_tokens, "stream": True, "stream_options": {"include_usage": True},
        }
        if self.stop:
            request["stop"] = list(self.stop)
        schema = CONSTANTS_SCHEMA if self.output == OUTPUT_CONSTANTS else EDIT_SCHEMA
        if structured == "response_format":
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "answer", "schema": schema}}
        elif structured == "json_object":
            request["response_format"] = {"type": "json_object", "schema": schema}
        elif structured == "format":
            request["extra_body"] = {"format": schema}
        return request

    def _complete(self, client: Any, messages: list[dict[str, str]], cancel: threading.Event | None,
                  structured: str = "none") -> tuple[str, bool, Usage]:
        """One streamed request: (the answer's text, whether it was cut off, its usage).

        Raises _Transient, _SchemaRefused or MutatorError.
        """
        import openai

        box: dict[str, Any] = {"parts": [], "finish": None, "usage": Usage()}
        done = threading.Event()

        def call() -> None:
            try:
                stream = client.chat.completions.create(**self._request(messages, structured))
                box["stream"] = stream
                for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        box["usage"] = Usage.of(chunk.usage)
                    for choice in getattr(chunk, "choices", None) or []:
                        delta = getattr(choice, "delta", None)
                        if delta is not None and getattr(delta, "content", None):
                            box["parts"].append(delta.content)
                        if delta is not None and getattr(delta, "refusal", None):
                            box["refusal"] = delta.refusal
                        if getattr(choice, "finish_reason", None):
                            box["finish"] = choice.finish_reason
            except BaseException as exc:  # handed to the waiting thread, which classifies it
                box["error"] = exc
            finally:
                done.set()

        # In a thread so that a cancelled lease or the deadline does not wait for the server;
        # closing the stream closes the connection, and the server stops generating.
        deadline = time.monotonic() + self.request_timeout
        threading.Thread(target=call, name="llm-request", daemon=True).start()
        while not done.wait(_CANCEL_POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                _close(box)
                raise MutatorError("cancelled while waiting for the model")
            if time.monotonic() > deadline:
                _close(box)
                raise _Transient(f"no complete answer within request_timeout={self.request_timeout:g}s")
        error = box.get("error")
        if isinstance(error, openai.APITimeoutError):
            raise _Transient(f"no answer within request_timeout={self.request_timeout:g}s")
        if isinstance(error, openai.APIConnectionError):
            raise _Transient(f"cannot reach {self._where()}: {error}")
        if isinstance(error, openai.APIStatusError):
            full_body = _body_text(error)
            body = one_line(full_body, _BODY_CHARS)
            status = error.status_code
            reason = f"HTTP {status} from {self._where()}: {body}"
            if structured != "none" and (status in (400, 422) or _SCHEMA_WORDS.search(full_body)):
                raise _SchemaRefused(reason, names_json_object="json_object" in full_body)
            if status in _RETRYABLE_STATUS or status >= 500:
                raise _Transient(reason)
            raise MutatorError(reason + _status_hint(status, self.api_key_env))
        if isinstance(error, openai.OpenAIError):
            raise _Transient(f"unusable response from {self._where()}: {error}")
        if error is not None:
            raise MutatorError(f"request to {self._where()} failed: {type(error).__name__}: {error}")
        content = "".join(box["parts"])
        if not content:
            refusal = box.get("refusal")
            raise _Transient("the model refused: " + one_line(refusal) if refusal else "the model's answer was empty")
        return content, box["finish"] == "length", box["usage"]

    def _apply(self, answer: str, source: str, target: str, known: set[str] | frozenset[str] = frozenset()) \
            -> tuple[str, str]:
        """(new target text, description) from an answer; raises EditError when unusable.

        `known`: edits the swarm already tried or is trying (constants format), refused here
        with the reason so that the retry asks for something else.
        """
        description = ""
        if self.output == OUTPUT_WHOLE_FILE:
            new_source = match_line_endings(parse_whole_file(answer), source)
        elif self.output == OUTPUT_JSON:
            blocks, description = json_edits(answer)
            new_source = _apply_blocks(source, blocks, target)
        elif self.output == OUTPUT_CONSTANTS:
            values, said = json_values(answer)
            new_source, description = set_constants(source, values)  # MutatorError names the problem
            if description in known:
                raise _KnownEdit(description)
            description = f"{description} — {said}" if said else description
        else:
            new_source = _apply_blocks(source, parse_edit_blocks(answer), target)
        if new_source == source:
            raise EditApplyError("the edit leaves the target unchanged; change something")
        if self.check_syntax and target.endswith(".py"):
            try:
                compile(new_source, target, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                where = f"line {exc.lineno}: " if getattr(exc, "lineno", None) else ""
                raise EditApplyError(f"the edited {target} is not valid Python ({where}{getattr(exc, 'msg', exc)})") \
                    from None
        return new_source, description or parse_description(answer) or describe_change(source, new_source)

    def _priced(self, usage: Usage) -> Usage:
        """`usage` with its cost at this model's price."""
        cost = (usage.prompt_tokens * self.price[0] + usage.completion_tokens * self.price[1]) / 1e6
        return Usage(usage.prompt_tokens, usage.completion_tokens, usage.cost_usd + cost)

    def _where(self) -> str:
        return self.base_url or "the OpenAI API"


def _apply_blocks(source: str, blocks: list[EditBlock], target: str) -> str:
    """`apply_edit_blocks`, with the target's closest real lines added to a not-found error."""
    try:
        return apply_edit_blocks(source, blocks)
    except EditApplyError as exc:
        missing = next((b.search for b in blocks if b.search.strip() and b.search.strip() not in source), "")
        if not missing:
            raise
        lines = "\n".join(candidate_lines(source, missing))
        raise EditApplyError(f"{exc}. This text is not in {target}: {one_line(missing, 200)!r}. "
                             f"Lines of {target} that are there, copy one exactly:\n{lines}") from None


def _close(box: dict[str, Any]) -> None:
    """Closes a request's stream (and so its connection) from the waiting thread."""
    stream = box.get("stream")
    if stream is not None:
        try:
            stream.close()
        except Exception as exc:  # already closed, or closing raced the reader: nothing to free
            log.debug("closing the llm stream: %s", exc)


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
