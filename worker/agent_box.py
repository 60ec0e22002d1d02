"""The box an agent CLI (the `command` mutator) runs in.

An agent reads a prompt built from what the coordinator sent (program.md, the target, the
swarm memory), so a hostile study can steer it: it must not reach more than an evaluation can.
With bubblewrap it runs in the worker's sandbox with two differences an agent needs: the
network (it calls its model's API) and a home of its own (its settings, caches and history).

- writable: the scratch copy, the agent's home (`--agent-home`, default
  `<state dir>/agent-home`) and its private TMPDIR; nothing else;
- invisible: the volunteer's `$HOME` (`~/.ssh`, browser profiles, cloud logins) and the
  worker's state directory (its identity and credential);
- environment: the allow-list every study command gets, plus only the variables the volunteer
  names with `--agent-env NAME` (the agent's own API key, e.g. ANTHROPIC_API_KEY);
- the volunteer's real agent login (e.g. `~/.claude`) only when named with `--agent-login`,
  bound read-only at the same place inside the agent's home.

`--unsafe-agent-no-sandbox` gives the old behaviour: the agent runs as the worker's user with
the worker's whole environment and real `$HOME`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from autoswarm.worker.sandbox import Access, PreparedCommand, Sandbox, sandbox_environment

UNSAFE_FLAG = "--unsafe-agent-no-sandbox"
_PANEL = "Agent CLI mutator"

# Typer declarations of the worker's agent-box flags, beside the code that interprets them.
AgentHomeOpt = Annotated[Optional[Path], typer.Option(
    "--agent-home", envvar="AUTOSWARM_AGENT_HOME", rich_help_panel=_PANEL,
    help="The agent CLI's own $HOME, writable (default: <state dir>/agent-home). Never your real home.")]
AgentLoginOpt = Annotated[Optional[list[Path]], typer.Option(
    "--agent-login", envvar="AUTOSWARM_AGENT_LOGIN", rich_help_panel=_PANEL,
    help="Bind your real agent login read-only into the agent's home (repeatable), e.g. ~/.claude or ~/.codex.")]
AgentEnvOpt = Annotated[Optional[list[str]], typer.Option(
    "--agent-env", envvar="AUTOSWARM_AGENT_ENV", rich_help_panel=_PANEL,
    help="NAME of a variable the agent gets from this worker's environment (repeatable), e.g. ANTHROPIC_API_KEY. "
         "Nothing else of the worker's environment reaches the agent.")]
UnsafeAgentOpt = Annotated[bool, typer.Option(
    UNSAFE_FLAG, envvar="AUTOSWARM_UNSAFE_AGENT_NO_SANDBOX", rich_help_panel=_PANEL,
    help="UNSAFE: run agent CLIs outside the sandbox, as this user, with this worker's whole environment and "
         "real $HOME (the behaviour before agents were boxed).")]


class AgentBoxError(ValueError):
    """A flag of the agent box is wrong; the message names it and the fix."""


@dataclass(frozen=True)
class AgentSettings:
    """The volunteer's agent-box flags, as given."""

    home: Path | None = None
    logins: tuple[Path, ...] = ()
    env_names: tuple[str, ...] = ()
    unsafe: bool = False

    def box(self, sandbox: Sandbox | None, state_dir: Path) -> AgentBox:
        """The box for one slot, whose evaluations run in `sandbox`."""
        home = Path(self.home or Path(state_dir) / "agent-home").expanduser().resolve()
        return AgentBox(sandbox=sandbox, home=home, logins=self.logins, env_names=self.env_names,
                        unsafe=self.unsafe)


def agent_settings(home: Path | None, logins: Sequence[Path], env_names: Sequence[str], unsafe: bool) -> AgentSettings:
    """Checks the flags: a login must exist, a variable name must be one.

    Raises AgentBoxError naming the flag.
    """
    checked = []
    for login in logins:
        path = Path(login).expanduser()
        if not path.exists():
            raise AgentBoxError(f"--agent-login: {login} does not exist; name your agent's login folder or file, "
                                "e.g. ~/.claude")
        checked.append(path.absolute())
    for name in env_names:
        if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name):
            raise AgentBoxError(f"--agent-env: {name!r} is not a variable name; give the NAME, e.g. ANTHROPIC_API_KEY, "
                                "never the value")
    return AgentSettings(home=home, logins=tuple(checked), env_names=tuple(env_names), unsafe=unsafe)


@dataclass(frozen=True)
class AgentBox:
    """How one agent command is confined; `prepare` wraps it."""

    sandbox: Sandbox | None = None            # None: no limits and no isolation, only the environment rules
    home: Path | None = None                  # None: a fresh home per edit, removed with its TMPDIR
    logins: tuple[Path, ...] = ()             # the volunteer's agent logins, read-only inside `home`
    env_names: tuple[str, ...] = ()           # variables passed on as they are
    unsafe: bool = False

    @property
    def isolated(self) -> bool:
        return not self.unsafe and self.sandbox is not None and self.sandbox.isolation == "bwrap"

    def prepare(self, argv: Sequence[str], workdir: Path, private: Path, extra_env: Mapping[str, str],
                timeout_seconds: float, environ: Mapping[str, str] | None = None) -> PreparedCommand:
        """argv and environment for the agent; `private` is its TMPDIR (writable, outside workdir)."""
        environ = dict(os.environ if environ is None else environ)
        if self.unsafe:
            return PreparedCommand(tuple(argv), {**environ, **extra_env, "TMPDIR": str(private)})
        home = self.home or private / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = sandbox_environment(environ, home=str(home), tmpdir=str(private))
        env.update(extra_env)
        passed = {name: environ[name] for name in self.env_names if name in environ}
        mapped = tuple((login, self._inside(login, home, environ)) for login in self.logins)
        if not self.isolated:
            # Nothing to bind into: the login is linked where the agent looks for it (not read-only).
            for source, inside in mapped:
                if not inside.exists() and not inside.is_symlink():
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    inside.symlink_to(source)
        if self.sandbox is None:
            return PreparedCommand(tuple(argv), {**env, **passed})
        for source, inside in mapped if self.isolated else ():  # mount points, made before bubblewrap needs them
            inside.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                inside.mkdir(exist_ok=True)
            elif not inside.exists():
                inside.touch()
        access = Access(workdir=workdir, writable=(private,), home=home, network=True,
                        mapped_read_only=mapped if self.isolated else ())
        self.sandbox.make_writable(workdir, private, home)
        prepared = self.sandbox.prepare(argv, access, env, timeout_seconds)
        # After the sandbox's own allow-list: the volunteer named these for the agent.
        return PreparedCommand(prepared.argv, {**prepared.env, **passed})

    @staticmethod
    def _inside(login: Path, home: Path, environ: Mapping[str, str]) -> Path:
        """Where a login appears inside the box: at the same place relative to the agent's home."""
        real_home = Path(environ.get("HOME") or Path.home())
        try:
            return home / login.relative_to(real_home)
        except ValueError:
            return home / login.name

    def describe(self) -> str:
        """One line for the worker's start-up banner."""
        if self.unsafe:
            return (f"agents: UNSAFE ({UNSAFE_FLAG}) — agent CLIs run outside the sandbox as this user, with the "
                    "worker's whole environment and your real $HOME")
        passed = f" plus {', '.join(self.env_names)} (--agent-env)" if self.env_names else " (no --agent-env)"
        logins = f"; your logins read-only: {', '.join(map(str, self.logins))}" if self.logins else ""
        where = f"home {self.home}" if self.home else "a fresh home per edit"
        if self.isolated:
            return ("agents: bubblewrap with the network — writable: the scratch copy, the agent's " + where
                    + " and its TMPDIR; your $HOME, ~/.ssh and the worker's state are not visible; environment: "
                    "the allow-list" + passed + logins)
        why = self.sandbox.reason if self.sandbox is not None and self.sandbox.reason else "no sandbox"
        return (f"agents: NOT isolated ({why}) — their own {where} and the allow-list environment" + passed
                + logins + ", but they can read and write whatever this user can")

