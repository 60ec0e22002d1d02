"""The study file, `study.toml`: parsing and validation.

Every problem is reported as a `StudyError` naming the key, what is wrong and how to fix it,
because the person reading it is editing a TOML file, not our code.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STUDY_FILE = "study.toml"
DIRECTIONS = ("minimize", "maximize")
COMPARE_MODES = ("paired", "absolute")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class StudyError(ValueError):
    """A study file is invalid. The message says which key, what is wrong, and the fix.

    `problems` lists each mistake on its own: a study file with several is reported whole,
    so that one run shows everything to fix.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


def _summary(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} mistakes:\n" + "\n".join(f"- {p}" for p in problems)


class _Problems:
    """Collects the mistakes of a study file instead of stopping at the first."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(self, check: Any, default: Any = None) -> Any:
        """`check()`'s value, or `default` after noting the StudyError it raised."""
        try:
            return check()
        except StudyError as exc:
            self.found.extend(exc.problems)
            return default

    def raise_any(self) -> None:
        if self.found:
            raise StudyError(_summary(self.found), tuple(self.found))


@dataclass(frozen=True)
class AcceptancePolicy:
    """How the coordinator decides that a candidate beats the champion."""

    quorum: int = 1
    min_delta: float = 0.0
    compare: str = "absolute"      # "paired": against the champion's baseline on the same hardware class
    noise_sigmas: float = 2.0      # an improvement must exceed this many noise σ
    baseline_runs: int = 2         # baseline measurements per champion and hardware class (paired)
    noise_prior: float = 0.0       # paired: σ of one run as the study states it (0: learnt from runs alone)


@dataclass(frozen=True)
class MutatorConfig:
    """Which mutator explores this study, and its options (passed through to the mutator)."""

    kind: str = "params"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A validated `study.toml`."""

    name: str
    target: str
    evaluate: str
    metric: str
    direction: str
    time_budget: float | None
    timeout: float
    program: str = "program.md"
    setup: str = ""
    setup_network: bool = False            # the sandbox lets `setup` (only) reach the network
    exclude: tuple[str, ...] = ()
    acceptance: AcceptancePolicy = field(default_factory=AcceptancePolicy)
    mutator: MutatorConfig = field(default_factory=MutatorConfig)
    # What the study's agents may spend in all (0: no cap); past it no new explore is leased.
    max_cost_usd: float = 0.0
    max_tokens: int = 0

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


_TOP_KEYS = {
    "name", "target", "program", "evaluate", "setup", "setup_network", "metric", "direction",
    "time_budget", "timeout", "exclude", "acceptance", "mutator", "max_cost_usd", "max_tokens",
}
_ACCEPTANCE_KEYS = {"quorum", "min_delta", "compare", "noise_sigmas", "baseline_runs", "noise_prior"}
_EXAMPLE = {
    "name": 'name = "quickstart"',
    "target": 'target = "train.py"',
    "evaluate": 'evaluate = "python train.py"',
    "metric": 'metric = "val_loss"',
    "direction": 'direction = "minimize"',
    "time_budget": "time_budget = 5",
    "timeout": "timeout = 60",
}


def _closest(word: str, choices: set[str]) -> str:
    import difflib

    match = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _require_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = [f"{where}unknown key {key!r}{_closest(key, allowed)}: remove it; allowed keys are "
               f"{', '.join(sorted(allowed))}" for key in table if key not in allowed]
    if unknown:
        raise StudyError(_summary(unknown), tuple(unknown))


def _string(data: dict[str, Any], key: str, *, required: bool, default: str = "") -> str:
    if key not in data:
        if required:
            raise StudyError(f"{key}: missing required key; add a line like `{_EXAMPLE[key]}`")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise StudyError(f"{key}: expected a string, got {type(value).__name__} {value!r}; quote it")
    return value.strip()


def _seconds(data: dict[str, Any], key: str) -> float:
    if key not in data:
        raise StudyError(f"{key}: missing required key; add a line like `{_EXAMPLE[key]}` (seconds)")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StudyError(f"{key}: expected a number of seconds, got {value!r}; write e.g. `{_EXAMPLE[key]}`")
    if not math.isfinite(value) or value <= 0:
        raise StudyError(f"{key}: must be a positive number of seconds, got {value!r}; write e.g. `{_EXAMPLE[key]}`")
    return float(value)


def _relative_file(study_dir: Path | None, key: str, value: str, *, must_exist: bool) -> str:
    path = Path(value)
    if not value:
        raise StudyError(f"{key}: is empty; name a file inside the study directory")
    if path.is_absolute() or ".." in path.parts:
        raise StudyError(
            f"{key}: {value!r} points outside the study directory; "
            "use a path relative to the directory holding study.toml"
        )
    if study_dir is not None and must_exist and not (study_dir / path).is_file():
        raise StudyError(
            f"{key}: {value!r} does not exist in {study_dir}; "
            f"create it or fix the name (files there: {_listing(study_dir)})"
        )
    return path.as_posix()


def _listing(directory: Path) -> str:
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") or "none"


def _acceptance(raw: Any, has_time_budget: bool) -> AcceptancePolicy:
    # Under a fixed time budget scores depend on the hardware, so compare like with like.
    default_compare = "paired" if has_time_budget else "absolute"
    if raw is None:
        return AcceptancePolicy(compare=default_compare)
    if not isinstance(raw, dict):
        raise StudyError("acceptance: expected a table `[acceptance]`, e.g. `[acceptance]\\nquorum = 1`")
    _require_keys(raw, _ACCEPTANCE_KEYS, "acceptance: ")
    quorum = raw.get("quorum", 1)
    if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1:
        raise StudyError(f"acceptance.quorum: must be a whole number >= 1, got {quorum!r}; e.g. `quorum = 1`")
    min_delta = raw.get("min_delta", 0.0)
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
        raise StudyError(
            f"acceptance.min_delta: must be a finite number >= 0, got {min_delta!r}; "
            "it is the smallest improvement that counts, e.g. `min_delta = 0.001`"
        )
    compare = raw.get("compare", default_compare)
    if compare not in COMPARE_MODES:
        raise StudyError(
            f'acceptance.compare: unknown mode {compare!r}; use "paired" (scores depend on the hardware) '
            'or "absolute" (hardware-independent metric)'
        )
    noise_sigmas = raw.get("noise_sigmas", 2.0)
    if isinstance(noise_sigmas, bool) or not isinstance(noise_sigmas, (int, float)) \
            or not math.isfinite(noise_sigmas) or noise_sigmas < 0:
        raise StudyError(f"acceptance.noise_sigmas: must be a number >= 0, got {noise_sigmas!r}; e.g. `noise_sigmas = 2`")
    baseline_runs = raw.get("baseline_runs", 2)
    if isinstance(baseline_runs, bool) or not isinstance(baseline_runs, int) or not 1 <= baseline_runs <= 20:
        raise StudyError(
            f"acceptance.baseline_runs: must be a whole number from 1 to 20, got {baseline_runs!r}; "
            "it is how often each hardware class measures each champion, e.g. `baseline_runs = 2`"
        )
    noise_prior = raw.get("noise_prior", 0.0)
    if isinstance(noise_prior, bool) or not isinstance(noise_prior, (int, float)) \
            or not math.isfinite(noise_prior) or noise_prior < 0:
        raise StudyError(
            f"acceptance.noise_prior: must be a finite number >= 0, got {noise_prior!r}; it is the σ of one "
            "run as you measured it (the metric's spread over repeated runs of one version), e.g. `noise_prior = 0.1`"
        )
    return AcceptancePolicy(quorum=quorum, min_delta=float(min_delta), compare=compare,
                            noise_sigmas=float(noise_sigmas), baseline_runs=baseline_runs,
                            noise_prior=float(noise_prior))


def _mutator(raw: Any) -> MutatorConfig:
    if raw is None:
        return MutatorConfig()
    if not isinstance(raw, dict):
        raise StudyError('mutator: expected a table `[mutator]`, e.g. `[mutator]\\nkind = "params"`')
    kind = raw.get("kind", "params")
    if not isinstance(kind, str) or not kind:
        raise StudyError(f'mutator.kind: expected a mutator name such as "params", got {kind!r}')
    options = {k: v for k, v in raw.items() if k != "kind"}
    _check_mutator(kind, options)
    return MutatorConfig(kind=kind, options=options)


def _check_mutator(kind: str, options: dict[str, Any]) -> None:
    """Refuses an unknown mutator kind or options its mutator would refuse, naming the key.

    Workers would otherwise accept the study and fail every task. What a worker may supply
    itself (its own agent command, its own model) gets a stand-in when the study leaves it out.
    """
    # Imported here: the mutators are worker code, and only their option rules are needed.
    from autoswarm.worker.mutators import KNOWN_KINDS, MutatorConfigError, create_mutator

    if kind not in KNOWN_KINDS:
        raise StudyError(f"mutator.kind: unknown mutator {kind!r}{_closest(kind, set(KNOWN_KINDS))}; "
                         f"use one of {', '.join(KNOWN_KINDS)}")
    stand_ins: dict[str, Any] = {"llm": {"model": "stand-in"}, "command": {"command": "stand-in"}}.get(kind, {})
    try:
        create_mutator(kind, {**stand_ins, **options})
    except MutatorConfigError as exc:
        raise StudyError(str(exc).splitlines()[0]) from None


def parse_study(data: dict[str, Any], study_dir: Path | None = None) -> Study:
    """Validates the parsed TOML of a study. With `study_dir`, also checks that files exist.

    Every mistake is found before any is reported: the StudyError lists them all.
    """
    problems = _Problems()
    problems.check(lambda: _require_keys(data, _TOP_KEYS, ""))
    name = problems.check(lambda: _name(data), "")
    target = problems.check(lambda: _relative_file(study_dir, "target", _string(data, "target", required=True),
                                                   must_exist=True))
    program = problems.check(lambda: _relative_file(
        study_dir, "program", _string(data, "program", required=False, default="program.md"),
        must_exist="program" in data))
    if target is not None and target == program:
        problems.found.append("program: must not be the target file; agents edit the target and read the program")
    evaluate = problems.check(lambda: _evaluate(data), "")
    setup = problems.check(lambda: _string(data, "setup", required=False), "")
    setup_network = data.get("setup_network", False)
    if not isinstance(setup_network, bool):
        problems.found.append(
            f"setup_network: expected true or false, got {setup_network!r}; "
            "write `setup_network = true` to let setup download data (evaluations never get the network)"
        )
    metric = problems.check(lambda: _metric(data), "")
    direction = problems.check(lambda: _direction(data), "")
    time_budget = problems.check(lambda: _seconds(data, "time_budget") if "time_budget" in data else None)
    timeout = problems.check(lambda: _seconds(data, "timeout"))
    if time_budget is not None and timeout is not None and timeout < time_budget:
        problems.found.append(
            f"timeout: {timeout:g}s is shorter than time_budget {time_budget:g}s; "
            "the evaluation would be killed before its budget ends: raise timeout"
        )
    exclude = data.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(p, str) for p in exclude):
        problems.found.append('exclude: expected a list of glob patterns, e.g. `exclude = ["data/*", "*.ckpt"]`')
    acceptance = problems.check(lambda: _acceptance(data.get("acceptance"), "time_budget" in data))
    mutator = problems.check(lambda: _mutator(data.get("mutator")))
    max_cost_usd = problems.check(lambda: _cap(data, "max_cost_usd", "max_cost_usd = 5.0"), 0.0)
    max_tokens = problems.check(lambda: int(_cap(data, "max_tokens", "max_tokens = 2000000", whole=True)), 0)
    problems.raise_any()
    return Study(
        name=name,
        target=target,
        program=program,
        evaluate=evaluate,
        setup=setup,
        setup_network=setup_network,
        metric=metric,
        direction=direction,
        time_budget=time_budget,
        timeout=timeout,
        exclude=tuple(exclude),
        acceptance=acceptance,
        mutator=mutator,
        max_cost_usd=max_cost_usd,
        max_tokens=max_tokens,
    )


def _cap(data: dict[str, Any], key: str, example: str, whole: bool = False) -> float:
    """A spending cap: a positive number (a whole one for tokens); absent: 0, no cap."""
    value = data.get(key, 0)
    ok = not isinstance(value, bool) and (isinstance(value, int) if whole else isinstance(value, (int, float)))
    if not ok or not math.isfinite(value) or value < 0:
        kind = "a whole number of tokens" if whole else "a number of US dollars"
        raise StudyError(f"{key}: expected {kind} (0: no cap), got {value!r}; write e.g. `{example}`")
    return float(value)


def _name(data: dict[str, Any]) -> str:
    name = _string(data, "name", required=True)
    if not _NAME_RE.match(name):
        raise StudyError(
            f"name: {name!r} is not a valid study name; use 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


def _evaluate(data: dict[str, Any]) -> str:
    evaluate = _string(data, "evaluate", required=True)
    if not evaluate:
        raise StudyError(f"evaluate: is empty; give the command that prints the metric, e.g. `{_EXAMPLE['evaluate']}`")
    return evaluate


def _metric(data: dict[str, Any]) -> str:
    metric = _string(data, "metric", required=True)
    if not _METRIC_RE.match(metric):
        raise StudyError(f"metric: {metric!r} is not a metric name; use the name the evaluation prints, e.g. `val_loss`")
    return metric


def _direction(data: dict[str, Any]) -> str:
    direction = _string(data, "direction", required=True)
    if direction not in DIRECTIONS:
        raise StudyError(f'direction: must be "minimize" or "maximize", got {direction!r}')
    return direction


def decode_study_text(data: bytes) -> str:
    """The text of a `study.toml` from its bytes; StudyError saying where when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise StudyError(f"study.toml is not UTF-8 text: byte {data[exc.start]:#04x} at line {line} "
                         f"(offset {exc.start}) cannot be decoded; save the file as UTF-8") from None


def parse_study_text(text: str, study_dir: Path | None = None) -> Study:
    """Parses and validates the text of a `study.toml`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"study.toml is not valid TOML: {exc}; fix the syntax at that line") from exc
    return parse_study(data, study_dir)


def load_study(study_dir: Path) -> Study:
    """Reads and validates `study_dir/study.toml`."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise StudyError(f"{study_dir}: not a directory; pass the folder that holds study.toml")
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"{path}: no study.toml here; create one (see the README's study file reference)")
    try:
        return parse_study_text(decode_study_text(path.read_bytes()), study_dir)
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}", exc.problems) from None
