"""Worker-side mutator choice: which kinds this worker runs, and its overrides of study options.

A study names its mutator and options in `study.toml`; a worker says which kinds it can run
(sent at Register, so the scheduler only gives it tasks it can run) and may override options
with flags or environment variables: the volunteer's own local model server, their own key.
This module turns those flags into `(kinds, options per kind)`; the worker merges the options
over the study's (execute.py) for every task.

Whose key goes where: the worker's key variable and base URL travel together. When a worker
sets either, both come from the worker (a missing one is the default: OpenAI's API, no key),
so a study can neither send the worker's key to a server the study chose nor make the worker
read an environment variable the study chose. A worker that sets neither and still runs `llm`
trusts the study's `base_url` and `api_key_env`: do that only for studies you trust.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from autoswarm.worker.mutators import KNOWN_KINDS
from autoswarm.worker.mutators.base import MutatorConfigError
from autoswarm.worker.mutators.command import CommandMutator
from autoswarm.worker.mutators.llm import LlmMutator

_LLM_PANEL = "LLM mutator (an OpenAI-compatible server)"
_AGENT_PANEL = "Agent CLI mutator"

# Typer declarations of the worker's mutator flags, kept beside the code that interprets them
# so that the `worker` command in autoswarm/cli.py only lists them.
MutatorsOpt = Annotated[Optional[list[str]], typer.Option(
    "--mutator", envvar="AUTOSWARM_MUTATORS",
    help="A mutator kind this worker runs (repeat, or comma-separate: params,llm,command). "
         "Default: params, plus llm when an --llm-* option is set, plus command when --agent-command is set.")]
LlmBaseUrlOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_BASE_URL", rich_help_panel=_LLM_PANEL,
    help="Chat-completions base URL, e.g. http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8000/v1 (vLLM).")]
LlmModelOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_MODEL", rich_help_panel=_LLM_PANEL, help="Model name the server knows.")]
LlmApiKeyEnvOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_API_KEY_ENV", rich_help_panel=_LLM_PANEL,
    help="NAME of the environment variable holding the API key (not the key). Unset: no key.")]
LlmTemperatureOpt = Annotated[Optional[float], typer.Option(
    min=0.0, max=2.0, envvar="AUTOSWARM_LLM_TEMPERATURE", rich_help_panel=_LLM_PANEL, help="Sampling temperature.")]
LlmMaxTokensOpt = Annotated[Optional[int], typer.Option(
    min=1, envvar="AUTOSWARM_LLM_MAX_TOKENS", rich_help_panel=_LLM_PANEL, help="Longest answer, in tokens.")]
LlmTimeoutOpt = Annotated[Optional[float], typer.Option(
    min=0.001, envvar="AUTOSWARM_LLM_TIMEOUT", rich_help_panel=_LLM_PANEL, help="Seconds per request.")]
LlmRetriesOpt = Annotated[Optional[int], typer.Option(
    min=0, envvar="AUTOSWARM_LLM_RETRIES", rich_help_panel=_LLM_PANEL,
    help="Extra attempts after an HTTP error, a timeout or an unusable answer.")]
LlmOutputOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_OUTPUT", rich_help_panel=_LLM_PANEL,
    help="Answer format: edits (SEARCH/REPLACE blocks), whole-file, json (edits as JSON against a schema) or "
         "constants (new values of the target's UPPER_CASE constants: for small models).")]
LlmStructuredOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_STRUCTURED", rich_help_panel=_LLM_PANEL,
    help="How json/constants answers are held to their schema: response_format (OpenAI, vLLM, llama.cpp), "
         "json_object (llama-cpp-python's server), format (Ollama) or none (asked for in the prompt only); "
         "a server that refuses one is asked the next way.")]
LlmStopOpt = Annotated[Optional[list[str]], typer.Option(
    "--llm-stop", envvar="AUTOSWARM_LLM_STOP", rich_help_panel=_LLM_PANEL,
    help="A string that ends the answer (repeatable, up to 4), e.g. the model's end-of-turn token.")]
LlmPriceOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_PRICE", rich_help_panel=_LLM_PANEL,
    help="The model's price as IN,OUT US dollars per million prompt and completion tokens, e.g. 0.15,0.6: "
         "each edit's cost is then counted.")]
LlmBudgetOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_LLM_BUDGET", rich_help_panel=_LLM_PANEL,
    help="Your own cap on what this worker's agents may spend, e.g. 5usd or 2000000tokens; once spent, "
         "the worker takes no more llm or command tasks (params tasks go on).")]
AgentCommandOpt = Annotated[Optional[str], typer.Option(
    envvar="AUTOSWARM_AGENT_COMMAND", rich_help_panel=_AGENT_PANEL,
    help="Agent CLI run in the scratch copy, e.g. 'claude -p --permission-mode acceptEdits'. "
         "{prompt_file} / {prompt} / {target} are replaced; without a prompt placeholder the prompt is on stdin.")]
AgentTimeoutOpt = Annotated[Optional[float], typer.Option(
    min=0.001, envvar="AUTOSWARM_AGENT_TIMEOUT", rich_help_panel=_AGENT_PANEL,
    help="Seconds the agent may run before its process group is killed (default 900).")]


@dataclass(frozen=True)
class WorkerMutatorFlags:
    """The worker's mutator flags as given (None: not given)."""

    mutators: Sequence[str] = ()
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key_env: str | None = None
    llm_temperature: float | None = None
    llm_max_tokens: int | None = None
    llm_timeout: float | None = None
    llm_retries: int | None = None
    llm_output: str | None = None
    llm_structured: str | None = None
    llm_stop: Sequence[str] | None = None
    llm_price: str | None = None
    agent_command: str | None = None
    agent_timeout: float | None = None


@dataclass(frozen=True)
class WorkerMutators:
    """The kinds a worker runs and its option overrides per kind (merged over the study's)."""

    kinds: tuple[str, ...] = ("params",)
    options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the worker's log; never holds a key (only the variable's name)."""
        parts = []
        for kind in self.kinds:
            opts = self.options.get(kind, {})
            if kind == "llm" and opts:
                shown = [f"{k}={opts[k]}" for k in ("model", "base_url", "api_key_env") if opts.get(k)]
                parts.append(f"llm ({', '.join(shown) or 'study settings'})")
            elif kind == "command" and opts.get("command"):
                parts.append(f"command ({opts['command']})")
            else:
                parts.append(kind)
        return ", ".join(parts)


def worker_mutators(flags: WorkerMutatorFlags) -> WorkerMutators:
    """Which kinds to advertise and which options to override, from the worker's flags.

    Raises MutatorConfigError (a ValueError) with the flag and the fix for an unknown kind, a
    bad value, or `llm` without the openai package.
    """
    llm: dict[str, object] = {}
    for key, value in (("model", flags.llm_model), ("temperature", flags.llm_temperature),
                       ("max_tokens", flags.llm_max_tokens), ("request_timeout", flags.llm_timeout),
                       ("retries", flags.llm_retries), ("output", flags.llm_output),
                       ("structured", flags.llm_structured),
                       ("stop", list(flags.llm_stop) if flags.llm_stop else None),
                       ("price", _price(flags.llm_price) if flags.llm_price is not None else None)):
        if value is not None:
            llm[key] = value
    if flags.llm_base_url is not None or flags.llm_api_key_env is not None:
        # Key and server travel together (see the module docstring).
        llm["base_url"] = flags.llm_base_url or ""
        llm["api_key_env"] = flags.llm_api_key_env or ""
    command: dict[str, object] = {}
    if flags.agent_command is not None:
        command["command"] = flags.agent_command
    if flags.agent_timeout is not None:
        command["timeout"] = flags.agent_timeout

    kinds = _kinds(flags.mutators)
    if not kinds:
        kinds = ("params",) + (("llm",) if llm else ()) + (("command",) if command else ())
    if "llm" in kinds and importlib.util.find_spec("openai") is None:
        raise MutatorConfigError("--mutator llm needs the openai package: pip install 'autoswarm[llm]'")
    try:
        if llm:
            # The study may supply the model; validate the worker's values with a stand-in.
            LlmMutator.from_options({"model": "stand-in", **llm})
        if command.get("command") is not None:
            CommandMutator.from_options(command)
        elif "timeout" in command:
            CommandMutator.from_options({"command": "stand-in", **command})
    except MutatorConfigError as exc:
        raise MutatorConfigError(_as_flag(str(exc))) from None
    options = {kind: opts for kind, opts in (("llm", llm), ("command", command)) if opts}
    return WorkerMutators(kinds=kinds, options=options)


def _price(text: str) -> list[float]:
    try:
        prompt, completion = (float(part) for part in text.split(","))
    except ValueError:
        raise MutatorConfigError(f"--llm-price: expected IN,OUT dollars per million tokens such as 0.15,0.6, "
                                 f"got {text!r}") from None
    return [prompt, completion]


@dataclass(frozen=True)
class Budget:
    """A volunteer's cap on what its agents spend: dollars, tokens, or both (0: no cap)."""

    usd: float = 0.0
    tokens: int = 0

    def spent(self, usd: float, tokens: int) -> bool:
        """Whether `usd` dollars and `tokens` tokens reach the cap."""
        return (self.usd > 0 and usd >= self.usd) or (self.tokens > 0 and tokens >= self.tokens)


def parse_budget(text: str) -> Budget:
    """`5usd`, `$5`, `2.5` (dollars) or `2000000tokens`, `2M tokens`; raises MutatorConfigError."""
    raw = text.strip().lower().replace(" ", "").replace("_", "")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}
    try:
        if raw.endswith(("tokens", "token", "tok")):
            number = raw.removesuffix("tokens").removesuffix("token").removesuffix("tok")
            factor = scale.get(number[-1:], 1.0)
            tokens = int(float(number[:-1] if number[-1:] in scale else number) * factor)
            if tokens > 0:
                return Budget(tokens=tokens)
        else:
            usd = float(raw.removeprefix("$").removesuffix("usd").removesuffix("$"))
            if usd > 0:
                return Budget(usd=usd)
    except (ValueError, IndexError):
        pass
    raise MutatorConfigError(f"--llm-budget: expected dollars such as 5usd or tokens such as 2000000tokens, got {text!r}")


def _kinds(given: Sequence[str]) -> tuple[str, ...]:
    kinds: list[str] = []
    for value in given:
        for kind in (k.strip() for k in value.split(",")):
            if not kind:
                continue
            if kind not in KNOWN_KINDS:
                raise MutatorConfigError(f"--mutator: unknown kind {kind!r}; known kinds: {', '.join(KNOWN_KINDS)}")
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


_FLAG_OF = {
    "mutator.model": "--llm-model", "mutator.base_url": "--llm-base-url", "mutator.api_key_env": "--llm-api-key-env",
    "mutator.temperature": "--llm-temperature", "mutator.max_tokens": "--llm-max-tokens",
    "mutator.request_timeout": "--llm-timeout", "mutator.retries": "--llm-retries",
    "mutator.price": "--llm-price", "mutator.output": "--llm-output", "mutator.structured": "--llm-structured", "mutator.stop": "--llm-stop",
    "mutator.command": "--agent-command", "mutator.timeout": "--agent-timeout",
}


def _as_flag(message: str) -> str:
    """A study-key error message reworded for the flag the worker was given."""
    key = message.split(":", 1)[0]
    flag = _FLAG_OF.get(key)
    return f"{flag}{message[len(key):]}" if flag else message
