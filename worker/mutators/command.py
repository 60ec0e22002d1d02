"""The `command` mutator: an agent CLI (Claude Code, Codex, aider...) edits the target in place.

The agent runs in the scratch copy (its working directory), without a shell, in its own
process group under its own time limit: at the limit, or when the lease is cancelled, the whole
group is killed exactly as for evaluations (worker/runner.py). It runs in the agent box
(worker/agent_box.py): with bubblewrap, the worker's sandbox plus the network and a home of its
own; of the worker's environment only the allow-list and what `--agent-env` names reach it.
The prompt (prompt.py) reaches
it in one of three ways, chosen by placeholders in the command:

- `{prompt_file}`: replaced by the path of a file holding the prompt;
- `{prompt}`: replaced by the prompt itself, as one argument;
- neither: the prompt is the agent's stdin.

`{target}` (the target's path relative to the working directory), `{workdir}` and `{tmpdir}`
(a private directory outside the working directory, for the agent's history and caches) are
also replaced. The edit is whatever the agent did to the target; its description is the last
`DESCRIPTION: ...` line the agent printed, or, when it printed none, the first changed line.

Decision on the agent's own files: any file the agent creates, changes or deletes in the
working directory other than the target makes the result `tampered` (execute.py checks after
`mutate` returns), with no allow-list. An allow-list would be a hole a hostile or confused agent
could use, and the evaluation must see exactly the bundle plus the new target. To keep honest
agents clear of it, the prompt file and the agent's log live in a private temporary directory
outside the working directory, TMPDIR points there too, and it is removed afterwards; the
README shows the flags that keep each CLI from writing history or caches into its cwd.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from autoswarm.worker.agent_box import AgentBox
from autoswarm.worker.mutators.base import (
    MutationOutcome,
    MutationRequest,
    MutatorConfigError,
    MutatorError,
    reject_unknown_options,
)
from autoswarm.worker.mutators.edits import describe_change, last_description
from autoswarm.worker.mutators.structured import agent_report
from autoswarm.worker.mutators.prompt import DESCRIPTION_PLACEHOLDER, PromptInputs, agent_prompt
from autoswarm.worker.runner import EXIT_NOT_FOUND, run_command
from autoswarm.worker.safe_files import read_regular

PROMPT_FILE = "{prompt_file}"
PROMPT_TEXT = "{prompt}"
TARGET = "{target}"
WORKDIR = "{workdir}"
TMPDIR = "{tmpdir}"
DEFAULT_TIMEOUT_SECONDS = 900.0
# Linux refuses a single argument longer than MAX_ARG_STRLEN (128 KiB); stay clear of it.
_MAX_PROMPT_ARG_BYTES = 100_000
_TAIL_CHARS = 2000
_DESCRIPTION_SEARCH_BYTES = 256 * 1024


@dataclass(frozen=True)
class CommandMutator:
    """The `command` mutator.

    Options: `command` (the agent command line, a string split like a shell would, or a list
    of arguments; a leading `python` is the worker's interpreter), `timeout` (seconds the agent
    may run, default 900).
    """

    kind: ClassVar[str] = "command"
    OPTIONS: ClassVar[tuple[str, ...]] = ("command", "timeout")

    command: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    # Set by the worker (worker/agent_box.py), never by a study: the default boxes nothing but
    # still gives the agent a home of its own and the allow-list environment.
    box: AgentBox = field(default_factory=AgentBox)

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(a, str) for a in self.command) or not self.command[0].strip():
            raise MutatorConfigError(
                "mutator.command: the command mutator needs the agent command line, e.g. "
                "`command = \"claude -p --permission-mode acceptEdits\"` in study.toml or "
                "`--agent-command 'claude -p --permission-mode acceptEdits'` on the worker"
            )
        if PROMPT_FILE in " ".join(self.command) and PROMPT_TEXT in " ".join(self.command):
            raise MutatorConfigError(
                "mutator.command: use either {prompt_file} or {prompt}, not both (neither: the prompt is on stdin)"
            )
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0 \
                or timeout == float("inf"):
            raise MutatorConfigError(f"mutator.timeout: expected a positive number of seconds, e.g. "
                                     f"`timeout = 600`, got {timeout!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> CommandMutator:
        """Build from a `[mutator]` table merged with worker overrides (`kind` is ignored)."""
        reject_unknown_options(cls.kind, options, cls.OPTIONS)
        return cls(command=_argv(options.get("command")),
                   timeout=options.get("timeout", DEFAULT_TIMEOUT_SECONDS))  # type: ignore[arg-type]

    def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Run the agent in `request.workdir`; the target as it leaves it is the edit."""
        if request.cancel is not None and request.cancel.is_set():
            raise MutatorError("cancelled before the edit")
        try:
            before = read_regular(request.workdir, request.target).decode("utf-8", errors="replace")
        except OSError as exc:
            raise MutatorError(f"cannot read target {request.target}: {exc}") from None
        prompt = agent_prompt(PromptInputs(request.program, request.target, None, request.memory))
        private = Path(tempfile.mkdtemp(prefix="autoswarm-agent-"))
        try:
            prompt_path = private / "prompt.md"
            prompt_path.write_text(prompt, encoding="utf-8")
            argv = self._argv_for(prompt, prompt_path, request)
            prepared = self.box.prepare(argv, request.workdir, private, {
                "AUTOSWARM_PROMPT_FILE": str(prompt_path), "AUTOSWARM_TARGET": request.target}, float(self.timeout))
            on_stdin = not any(PROMPT_FILE in a or PROMPT_TEXT in a for a in self.command)
            outcome = run_command(list(prepared.argv), cwd=request.workdir, env=prepared.env,
                                  timeout_seconds=float(self.timeout), log_path=private / "agent.log",
                                  tail_chars=_TAIL_CHARS, cancel=request.cancel,
                                  stdin_path=prompt_path if on_stdin else None)
            with open(outcome.log_path, "rb") as log:
                # The description is at the end; a chatty agent's whole log need not be in memory.
                log.seek(max(0, log.seek(0, os.SEEK_END) - _DESCRIPTION_SEARCH_BYTES))
                output = log.read().decode("utf-8", errors="replace")
        finally:
            shutil.rmtree(private, ignore_errors=True)
        name = Path(argv[0]).name
        if outcome.cancelled:
            raise MutatorError(f"cancelled while the agent {name} was running; its process group was killed")
        if outcome.timed_out:
            raise MutatorError(f"the agent {name} did not finish within its {self.timeout:g}s timeout; "
                               f"its process group was killed\n{outcome.output_tail}")
        if outcome.returncode != 0:
            hint = "" if outcome.returncode != EXIT_NOT_FOUND else (
                " (is it installed and on the worker's PATH? In the agent box only the system, the worker's Python "
                "and --sandbox-ro paths are visible)" if self.box.isolated else
                " (is it installed and on the worker's PATH?)")
            raise MutatorError(f"the agent {name} exited with status {outcome.returncode}{hint}\n"
                               f"{outcome.output_tail}")
        usage, answer = agent_report(output)  # Claude Code's --output-format json says what it cost
        description = last_description(answer or output, ignore=DESCRIPTION_PLACEHOLDER)
        if not description:
            try:
                # Never through a link: the agent may have replaced the target with one.
                after = read_regular(request.workdir, request.target).decode("utf-8", errors="replace")
            except OSError:
                after = before  # the tamper check reports the deleted or replaced target
            description = describe_change(before, after)
        return MutationOutcome(description=description, usage=usage)

    def _argv_for(self, prompt: str, prompt_path: Path, request: MutationRequest) -> list[str]:
        if any(PROMPT_TEXT in a for a in self.command) and len(prompt.encode()) > _MAX_PROMPT_ARG_BYTES:
            raise MutatorError(
                f"the prompt is {len(prompt.encode())} bytes, too long for one {PROMPT_TEXT} argument; "
                f"use {PROMPT_FILE} or give the prompt on stdin (no placeholder) in the agent command"
            )
        replacements = {PROMPT_FILE: str(prompt_path), PROMPT_TEXT: prompt, TARGET: request.target,
                        WORKDIR: str(request.workdir), TMPDIR: str(prompt_path.parent)}
        argv = []
        for arg in self.command:
            for placeholder, value in replacements.items():
                arg = arg.replace(placeholder, value)
            argv.append(arg)
        # The same rule as study commands: a leading `python` is the worker's own interpreter.
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv


def _argv(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise MutatorConfigError(f"mutator.command: cannot parse {value!r}: {exc}") from None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if value is None:
        return ()
    raise MutatorConfigError(f"mutator.command: expected a command line string or a list of arguments, got {value!r}")
