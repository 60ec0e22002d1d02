"""The offline `params` mutator: nudge a Python target's module-level numeric constants.

autoresearch's `train.py` keeps its hyperparameters as module-level UPPER_CASE constants
(`MATRIX_LR = 0.04`, `DEPTH = 8`); so do most scripts. This mutator picks one or a few of them
and perturbs them multiplicatively (log-normal), so that the same relative step means the same
thing for a learning rate of 3e-4 and a batch size of 512. Only the literal's characters change:
comments, formatting and everything else stay byte for byte.
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from autoswarm import words
from autoswarm.worker.mutators import compass
from autoswarm.worker.mutators.base import (
    MutationOutcome,
    MutationRequest,
    MutatorConfigError,
    MutatorError,
    reject_unknown_options,
)

_CONSTANT_NAME = re.compile(r"^_*[A-Z][A-Z0-9_]*$")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # what Python's tokenizer counts as a new line
_BOM = "\ufeff"
# Ints beyond 2**53 do not survive a float multiply exactly; floats near the ends of the range
# would overflow or underflow. No hyperparameter lives out there.
_MAX_INT = 2**53
_FLOAT_RANGE = (1e-300, 1e300)
_MAX_DRAWS = 32
# Re-draws when the drawn edit is already in the swarm memory (someone tried it), at each of
# these multiples of the step size in turn.
_MEMORY_ATTEMPTS = 8
_WIDER_STEPS = (1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class _Constant:
    """A perturbable module-level constant and where its literal sits (UTF-8 byte offsets)."""

    name: str
    magnitude: int | float  # the literal itself; a leading minus is a separate UnaryOp
    literal_start: int
    literal_end: int
    value_start: int  # the whole value expression, minus sign included, for the description
    value_end: int
    node: ast.Constant


def perturb_constants(
    source: str,
    seed: int,
    max_changes: int = 2,
    scale: float = 0.3,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[str, str]:
    """Perturb 1..`max_changes` module-level UPPER_CASE int/float constants of `source`.

    Returns (new_source, description), e.g. ("...", "LR 0.01 -> 0.013, BATCH_SIZE 32 -> 41").
    Only `NAME = <number>` and `NAME: T = <number>` at module level count (a leading minus is
    fine); bools, strings, tuples, expressions, chained or unpacking assignments, constants
    inside functions or classes, and zero (which has no scale to perturb) are left alone. When
    a name is assigned several times at module level, only its last assignment is the
    effective one and only that one is a candidate. Ints stay ints, change by at least 1 and
    never reach or cross zero; floats are multiplied by exp(N(0, `scale`)) and rounded to 3 (or
    4) significant digits, always to a different value. `include`, when given, restricts the
    candidates to those names; `exclude` removes names. Deterministic in (`source`, `seed`).

    Raises MutatorError when `source` is not valid Python or has no candidate.
    """
    if max_changes < 1:
        raise ValueError(f"max_changes must be at least 1, got {max_changes}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a non-negative number, got {scale}")
    bom = _BOM if source.startswith(_BOM) else ""
    body = source[len(bom):]
    tree, data = _parse(body)
    constants = _find_constants(tree, data)
    found = [c.name for c in constants]
    wanted, unwanted = set(include), set(exclude)
    constants = [c for c in constants if (not wanted or c.name in wanted) and c.name not in unwanted]
    if not constants:
        raise MutatorError(_nothing_to_perturb(found, include, exclude))

    rng = random.Random(seed)
    count = rng.randint(1, min(max_changes, len(constants)))
    chosen = sorted(rng.sample(constants, count), key=lambda c: c.literal_start)

    edits: list[tuple[_Constant, str]] = []
    for constant in chosen:
        old_text = data[constant.literal_start:constant.literal_end].decode("utf-8")
        if isinstance(constant.magnitude, int):
            new_text = _format_int(_perturb_int(constant.magnitude, rng, scale), old_text)
        else:
            new_text = _perturb_float(constant.magnitude, rng, scale, scientific="e" in old_text.lower())
        edits.append((constant, new_text))
    return _apply(bom, tree, data, edits)


def compass_edits(
    source: str,
    memory: str,
    seed: int,
    scale: float = 0.7,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    prefer: Mapping[str, int] | None = None,
    avoid: Sequence[str] = (),
    order_seed: int | None = None,
) -> list[tuple[str, str]]:
    """One-constant edits of `source` by compass search (`compass.plan`), best first.

    Each is (new_source, description) as `perturb_constants` returns it: one constant's
    magnitude times about exp(±`scale`) (further, half or the same again as the `memory`'s
    evidence says). `prefer` maps names to the way (+1 up, -1 down) to try first without
    evidence; constants in `avoid` (being evaluated elsewhere) come last. Ties are ordered by
    `order_seed` (None: `seed`), the steps' lengths by `seed`: explores leased together, given
    one order seed, rank the same constants alike. Deterministic in (`source`, `memory`,
    `seed`, `order_seed`).

    Raises MutatorError when `source` is not valid Python or has no candidate.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale}")
    bom = _BOM if source.startswith(_BOM) else ""
    body = source[len(bom):]
    tree, data = _parse(body)
    found = _find_constants(tree, data)
    wanted, unwanted = set(include), set(exclude)
    constants = {c.name: c for c in found if (not wanted or c.name in wanted) and c.name not in unwanted}
    if not constants:
        raise MutatorError(_nothing_to_perturb([c.name for c in found], include, exclude))
    rng = random.Random(seed if order_seed is None else order_seed)
    moves = compass.plan({name: float(c.magnitude) for name, c in constants.items()}, compass.outcomes(memory),
                         scale, prefer or {}, avoid, rng)
    if order_seed is not None and order_seed != seed:
        rng = random.Random(seed)   # this lease's own steps (alone, one generator does both, as ever)
    edits: list[tuple[str, str]] = []
    for move in moves:
        constant = constants[move.name]
        new_text = _stepped(constant, data, move.factor(rng.uniform(-1.0, 1.0)))
        if new_text is not None:
            edits.append(_apply(bom, tree, data, [(constant, new_text)]))
    return edits


def _stepped(constant: _Constant, data: bytes, factor: float) -> str | None:
    """The literal of `constant` with its magnitude times `factor`, moved at least one unit (or
    digit) that way; None when it cannot move that way (an int at 1, the end of the range)."""
    old = constant.magnitude
    old_text = data[constant.literal_start:constant.literal_end].decode("utf-8")
    up = factor > 1
    if isinstance(old, int):
        new = round(old * factor)
        if new == old:
            new = old + (1 if up else -1)
        new = _round_int(new, old)
        return _format_int(new, old_text) if 1 <= new <= _MAX_INT and (new > old) == up else None
    target = old * factor
    if not _FLOAT_RANGE[0] <= target <= _FLOAT_RANGE[1]:
        return None
    for digits in (3, 4, 6):
        text = _format_float(target, digits, scientific="e" in old_text.lower())
        if float(text) != old and (float(text) > old) == up:
            return text
    return None


def _apply(bom: str, tree: ast.Module, data: bytes, edits: Sequence[tuple[_Constant, str]]) -> tuple[str, str]:
    """The source with each constant's literal replaced by its new text, and the description."""
    new_data = data
    for constant, new_text in sorted(edits, key=lambda e: -e[0].literal_start):
        new_data = new_data[:constant.literal_start] + new_text.encode() + new_data[constant.literal_end:]
    new_body = new_data.decode("utf-8")
    _check_only_literals_changed(tree, new_body, edits)
    description = ", ".join(_describe(constant, new_text, data) for constant, new_text in edits)
    return bom + new_body, description


def constant_values(source: str) -> list[tuple[str, str]]:
    """The target's perturbable constants and their current values as written, in source order.

    Raises MutatorError when `source` is not valid Python or has none.
    """
    tree, data = _parse(source.removeprefix(_BOM))
    constants = _find_constants(tree, data)
    if not constants:
        raise MutatorError(_nothing_to_perturb([], (), ()))
    return [(c.name, " ".join(data[c.value_start:c.value_end].decode("utf-8").split())) for c in constants]


def set_constants(source: str, values: Mapping[str, object]) -> tuple[str, str]:
    """`source` with the named constants set to new values, written the way `perturb_constants`
    writes its own: ints stay ints, a constant keeps its sign, only the literal's characters
    change. Returns (new_source, description), e.g. ("...", "LR 0.01 -> 0.02").

    Raises MutatorError naming the problem for an unknown name, a value that is not a number,
    has the wrong sign, or leaves every constant as it was.
    """
    bom = _BOM if source.startswith(_BOM) else ""
    body = source[len(bom):]
    tree, data = _parse(body)
    by_name = {c.name: c for c in _find_constants(tree, data)}
    edits: list[tuple[_Constant, str]] = []
    for name, value in values.items():
        constant = by_name.get(name)
        if constant is None:
            raise MutatorError(f"{name!r} is not one of the target's constants ({', '.join(by_name) or 'none'})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise MutatorError(f"the value for {name} must be a number, got {value!r}")
        negative = data[constant.value_start:constant.literal_start].strip().startswith(b"-")
        magnitude = -value if negative else value
        if magnitude <= 0:
            sign = "negative" if negative else "positive"
            raise MutatorError(f"{name} must stay {sign} (it is {' '.join(data[constant.value_start:constant.value_end].decode().split())}), "
                               f"got {value!r}")
        old_text = data[constant.literal_start:constant.literal_end].decode("utf-8")
        if isinstance(constant.magnitude, int):
            new_text = _format_int(max(1, round(magnitude)), old_text)
        else:
            new_text = _format_float(float(magnitude), 6, scientific="e" in old_text.lower())
        if ast.literal_eval(new_text) != constant.magnitude:
            edits.append((constant, new_text))
    if not edits:
        raise MutatorError("the new values leave every constant as it was; change at least one")
    edits.sort(key=lambda e: e[0].literal_start)
    return _apply(bom, tree, data, edits)


def _parse(body: str) -> tuple[ast.Module, bytes]:
    try:
        return ast.parse(body), body.encode("utf-8")
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        raise MutatorError(
            f"target is not valid Python ({where}{exc.msg}); the params mutator edits Python constants only"
        ) from exc
    except (ValueError, RecursionError) as exc:  # null bytes; absurd nesting
        raise MutatorError(f"target is not valid Python ({exc})") from exc


@dataclass(frozen=True)
class ParamsMutator:
    """The `params` mutator, configured from a study's `[mutator]` table.

    Options: `max_changes` (int >= 1, default 2), `scale` (log-normal sigma > 0, default 0.3),
    `include` / `exclude` (lists of constant names), `search` ("random", the default: random
    constants, random steps; or "compass": one constant at a time, steps of about exp(±scale)
    the way the swarm memory's evidence points, see `compass`), and `prefer` (compass only: a
    table of names to "up" or "down", the way to try a constant first while nothing is known).
    """

    kind: ClassVar[str] = "params"
    OPTIONS: ClassVar[tuple[str, ...]] = ("max_changes", "scale", "include", "exclude", "search", "prefer")
    SEARCHES: ClassVar[tuple[str, ...]] = ("random", "compass")

    max_changes: int = 2
    scale: float = 0.3
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    search: str = "random"
    prefer: tuple[tuple[str, int], ...] = ()   # (name, +1 up / -1 down)

    def __post_init__(self) -> None:
        if isinstance(self.max_changes, bool) or not isinstance(self.max_changes, int) or self.max_changes < 1:
            raise MutatorConfigError(
                f"mutator.max_changes: expected an integer >= 1, got {self.max_changes!r}"
            )
        if (
            isinstance(self.scale, bool)
            or not isinstance(self.scale, (int, float))
            or not math.isfinite(self.scale)
            or self.scale <= 0
        ):
            raise MutatorConfigError(
                f"mutator.scale: expected a positive number such as 0.3, got {self.scale!r}"
            )
        if self.search not in self.SEARCHES:
            raise MutatorConfigError(
                f'mutator.search: expected "random" or "compass", got {self.search!r}'
            )
        if self.search == "compass" and self.max_changes != 1:
            raise MutatorConfigError(
                "mutator.max_changes: compass search moves one constant at a time; "
                'leave max_changes out (or 1), or use search = "random"'
            )
        if self.prefer and self.search != "compass":
            raise MutatorConfigError('mutator.prefer: only compass search uses it; add search = "compass"')
        outside = [name for name, _ in self.prefer if (self.include and name not in self.include)
                   or name in self.exclude]
        if outside:
            raise MutatorConfigError(f"mutator.prefer: {outside[0]} is not among the constants it may change "
                                     "(include / exclude); add it there or drop it from prefer")

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> ParamsMutator:
        """Build from a `[mutator]` table (a `kind` key, if passed along, is ignored)."""
        reject_unknown_options(cls.kind, options, cls.OPTIONS)
        search = options.get("search", "random")
        return cls(
            max_changes=options.get("max_changes", 1 if search == "compass" else 2),  # type: ignore[arg-type]
            scale=options.get("scale", 0.3),  # type: ignore[arg-type]
            include=_names_option(options, "include"),
            exclude=_names_option(options, "exclude"),
            search=search,  # type: ignore[arg-type]
            prefer=_prefer_option(options),
        )

    def mutate(self, request: MutationRequest) -> MutationOutcome:
        """Perturb the target's constants in place, avoiding edits the swarm memory lists."""
        if request.cancel is not None and request.cancel.is_set():
            raise MutatorError("cancelled before the edit")
        path = request.workdir / request.target
        try:
            # Bytes, not text mode: text mode would rewrite \r\n line endings.
            source = path.read_bytes().decode("utf-8")
        except FileNotFoundError as exc:
            raise MutatorError(f"target {request.target} not found in {request.workdir}") from exc
        except UnicodeDecodeError as exc:
            raise MutatorError(f"target {request.target} is not UTF-8 text: {exc}") from exc
        except OSError as exc:
            raise MutatorError(f"cannot read target {request.target}: {exc}") from exc

        # Constants that other workers are perturbing right now are left to them while others
        # remain: parallel edits then touch different lines and merge instead of conflicting.
        busy = tuple(sorted(in_flight_constants(request.memory)))
        found = self._compass(source, request, busy) if self.search == "compass" else None
        if found is not None:
            new_source, description = found
        else:
            try:
                new_source, description = self._draw(source, request, self.exclude + busy)
            except MutatorError:
                if not busy:
                    raise
                new_source, description = self._draw(source, request, self.exclude)
        try:
            path.write_bytes(new_source.encode("utf-8"))
        except OSError as exc:
            raise MutatorError(f"cannot write target {request.target}: {exc}") from exc
        return MutationOutcome(description=description)

    def _compass(self, source: str, request: MutationRequest, busy: Sequence[str]) -> tuple[str, str] | None:
        """The best compass move the swarm memory does not list as tried, past those that the
        explores leased just before this one are making (`compass.after_peers`); None when
        every move is tried (then random draws, widening, take over)."""
        ahead = max(0, request.edits_ahead)
        untried = [edit for edit in compass_edits(
            source, request.memory, request.seed, scale=self.scale, include=self.include,
            exclude=self.exclude, prefer=dict(self.prefer), avoid=busy,
            order_seed=request.order_seed if ahead else None,
        ) if not known(edit[1], request.memory)]
        index = compass.after_peers([description.split(" ", 1)[0] for _, description in untried], ahead)
        return None if index is None else untried[index]

    def _draw(self, source: str, request: MutationRequest, exclude: Sequence[str]) -> tuple[str, str]:
        """An edit of `source` that the swarm memory does not list as tried.

        Re-draws (other constants, other values) while the drawn edit is known; when every draw
        near the current values is known — a small space, mostly explored — it takes larger
        steps. Raises MutatorError when even those are all known: a duplicate would cost the
        swarm a task and teach nothing.
        """
        attempt = 0
        for widen in _WIDER_STEPS:
            for _ in range(_MEMORY_ATTEMPTS):
                new_source, description = perturb_constants(
                    source,
                    seed=request.seed + attempt * 1_000_003,
                    max_changes=self.max_changes,
                    scale=self.scale * widen,
                    include=self.include,
                    exclude=exclude,
                )
                attempt += 1
                if not known(description, request.memory):
                    return new_source, description
        raise MutatorError(
            f"every one of {attempt} edits drawn (steps up to {_WIDER_STEPS[-1]:g}x mutator.scale) is already in "
            "the swarm memory; the nearby space looks explored — raise mutator.scale or let it edit more constants"
        )


def known(description: str, memory: str) -> bool:
    """Whether the swarm memory lists the edit `description` (as a whole: `X 4 -> 2` is not
    `X 4 -> 20`, nor `X 4 -> 2.5`)."""
    return re.search(rf"(?<![\w.]){re.escape(description)}(?![\w.])", memory) is not None


_DIRECTIONS = {"up": 1, "down": -1}


def _prefer_option(options: Mapping[str, object]) -> tuple[tuple[str, int], ...]:
    value = options.get("prefer", {})
    if isinstance(value, Mapping) and all(isinstance(k, str) and v in _DIRECTIONS for k, v in value.items()):
        return tuple((name, _DIRECTIONS[way]) for name, way in value.items())  # type: ignore[index]
    raise MutatorConfigError(
        f'mutator.prefer: expected a table of constant names to "up" or "down", such as '
        f'{{ LEARNING_RATE = "up", BATCH_SIZE = "down" }}, got {value!r}'
    )


_EDITED_NAME = re.compile(r"(?:^|, )(_*[A-Z][A-Z0-9_]*) \S.*? -> ")


def in_flight_constants(memory: str) -> set[str]:
    """Names of the constants that the swarm memory lists as being evaluated right now."""
    names: set[str] = set()
    in_section = False
    for line in memory.splitlines():
        if not line.startswith("- "):
            in_section = line == words.MEMORY_IN_FLIGHT
            continue
        if in_section:
            names.update(m.group(1) for m in _EDITED_NAME.finditer(line[2:]))
    return names


def _names_option(options: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = options.get(key, ())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MutatorConfigError(
        f'mutator.{key}: expected a list of constant names such as ["LR", "BATCH_SIZE"], got {value!r}'
    )


def _find_constants(tree: ast.Module, data: bytes) -> list[_Constant]:
    """The effective perturbable constants of a module, in source order."""
    line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(data)]

    def offset(lineno: int, col: int) -> int:
        return line_starts[lineno - 1] + col  # ast columns are UTF-8 byte offsets

    last: dict[str, _Constant | None] = {}
    for stmt in tree.body:
        constant = _literal_assignment(stmt)
        if constant is not None:
            name, literal, value = constant
            last[name] = _Constant(
                name=name,
                magnitude=literal.value,
                literal_start=offset(literal.lineno, literal.col_offset),
                literal_end=offset(literal.end_lineno or literal.lineno, literal.end_col_offset or 0),
                value_start=offset(value.lineno, value.col_offset),
                value_end=offset(value.end_lineno or value.lineno, value.end_col_offset or 0),
                node=literal,
            )
            continue
        # Any other module-level rebinding makes an earlier literal ineffective.
        for name in _bound_names(stmt):
            last[name] = None
    return sorted((c for c in last.values() if c is not None), key=lambda c: c.literal_start)


def _literal_assignment(stmt: ast.stmt) -> tuple[str, ast.Constant, ast.expr] | None:
    """(name, literal, value) for `NAME = <number>` / `NAME: T = <number>`, else None."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.simple and stmt.value is not None:
        target, value = stmt.target, stmt.value
    else:
        return None
    if not isinstance(target, ast.Name) or not _CONSTANT_NAME.match(target.id):
        return None
    literal = value
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
        literal = value.operand
    if not isinstance(literal, ast.Constant) or not _perturbable(literal.value):
        return None
    return target.id, literal, value


def _perturbable(value: object) -> bool:
    if type(value) is int:  # exactly int: bool is an int subclass but not a number here
        return 0 < value <= _MAX_INT
    if type(value) is float:
        return _FLOAT_RANGE[0] <= value <= _FLOAT_RANGE[1]
    return False


def _bound_names(stmt: ast.stmt) -> list[str]:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = [stmt.target]
    names: list[str] = []
    for target in targets:
        names.extend(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _perturb_int(old: int, rng: random.Random, scale: float) -> int:
    """A different positive int near `old` (a magnitude >= 1) on a log scale; 1 may become 2."""
    factor = math.exp(rng.gauss(0.0, scale))
    new = round(old * factor)
    if new == old:
        new = old + (1 if factor >= 1 else -1)
    if new < 1:
        new = old + 1
    return _round_int(new, old)


def _round_int(new: int, old: int) -> int:
    """`new` to three significant digits from 1000 on, as for floats (1342 -> 1340, like a
    person would write it), unless that lands back on `old`."""
    if new >= 1000:
        unit = 10 ** (len(str(new)) - 3)
        rounded = (new + unit // 2) // unit * unit
        if rounded != old:
            return rounded
    return new


def _perturb_float(old: float, rng: random.Random, scale: float, scientific: bool) -> str:
    """The literal text of a float near `old` (> 0) that differs from it."""
    for _ in range(_MAX_DRAWS):
        target = old * math.exp(rng.gauss(0.0, scale))
        if not _FLOAT_RANGE[0] <= target <= _FLOAT_RANGE[1]:
            continue
        for digits in (3, 4):
            text = _format_float(target, digits, scientific)
            if float(text) != old:
                return text
    # Only reachable with a tiny `scale`: step instead of drawing.
    for step in (1.001, 1.01, 1.1, 2.0):
        text = _format_float(old * step, 4, scientific)
        if float(text) != old:
            return text
    raise MutatorError(f"could not find a value different from {old!r}")


def _format_float(value: float, digits: int, scientific: bool) -> str:
    """`value` to `digits` significant digits, as a float literal (`1.3e-3` if `scientific`)."""
    if scientific:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return repr(float(f"{value:.{digits}g}"))  # repr of a float always reads back as a float


def _format_int(value: int, old_text: str) -> str:
    """`value` written the way the old literal was (hex/octal/binary prefix, `_` separators)."""
    prefix = old_text[:2] if old_text[:2].lower() in ("0x", "0o", "0b") else ""
    spec = {"0x": "x", "0o": "o", "0b": "b"}.get(prefix.lower(), "d")
    if "_" in old_text:
        spec = "_" + spec
    digits = format(value, spec)
    if prefix and any(ch.isupper() for ch in old_text[2:]):
        digits = digits.upper()
    return prefix + digits


def _describe(constant: _Constant, new_text: str, data: bytes) -> str:
    old_value = data[constant.value_start:constant.value_end]
    before = data[constant.value_start:constant.literal_start]
    after = data[constant.literal_end:constant.value_end]
    new_value = before + new_text.encode() + after
    # Collapse whitespace so the description stays one line even for `-\n 3`.
    old_shown = " ".join(old_value.decode("utf-8").split())
    new_shown = " ".join(new_value.decode("utf-8").split())
    return f"{constant.name} {old_shown} -> {new_shown}"


def _check_only_literals_changed(
    tree: ast.Module, new_body: str, edits: Sequence[tuple[_Constant, str]]
) -> None:
    """Guard against writing a broken target: the new AST must equal the old one but for the
    edited literals."""
    try:
        new_tree = ast.parse(new_body)
    except SyntaxError as exc:  # a bug here must not reach the evaluation
        raise MutatorError(f"internal error: the edit broke the target ({exc})") from exc
    originals = [(c.node, c.node.value) for c, _ in edits]
    try:
        for constant, new_text in edits:
            constant.node.value = ast.literal_eval(new_text)
        same = ast.dump(tree) == ast.dump(new_tree)
    finally:
        for node, value in originals:
            node.value = value
    if not same:
        raise MutatorError("internal error: the edit changed more than the chosen constants")


def _nothing_to_perturb(found: Sequence[str], include: Sequence[str], exclude: Sequence[str]) -> str:
    if not found:
        return (
            "no module-level UPPER_CASE int or float constant to perturb in the target "
            "(the params mutator needs lines such as `LEARNING_RATE = 0.01` or `BATCH_SIZE = 32`)"
        )
    return (
        f"no constant left to perturb after include={list(include)} exclude={list(exclude)}; "
        f"the target has: {', '.join(found)}"
    )
