"""The offline `params` mutator on targets it has never seen."""

from __future__ import annotations

import ast
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoswarm.worker.mutators import (
    KNOWN_KINDS,
    MutationRequest,
    Mutator,
    MutatorError,
    ParamsMutator,
    create_mutator,
)
from autoswarm import words
from autoswarm.worker.mutators.params import in_flight_constants, perturb_constants

UNUSUAL_TARGET = '''\
# -*- coding: utf-8 -*-
"""A target the mutator never saw. NUMBERS = 5 in this docstring must stay."""
from __future__ import annotations

import math

Learning_Rate = 0.1          # mixed case: not a constant
lowercase_steps = 3
LR: float = 3e-4  # adam, scientific notation
WARMUP_RATIO = .05
DECAY = -1.5E-2
DEPTH: int = 12
HEX_MASK = 0x1F
SEED = 0
ENABLED = True
NAME = "résumé"; BETA2 = 0.95   # non-ASCII earlier on the same line
SHAPE = (3, 4)
PRODUCT = 2 * 3
NEG_INT = -7
WINDOW = (
    256
)
REASSIGNED = 1.0
REASSIGNED = 2.0
OVERRIDDEN = 5
OVERRIDDEN = int(math.sqrt(25))
A = B = 4
X, Y = 1, 2
COMPLEX_J = 2j
HUGE = 1e999


def schedule(step: int) -> float:
    INNER = 3
    return INNER * step


class Config:
    CLASS_CONST = 64


if __name__ == "__main__":
    MAIN_ONLY = 10
'''

# What may change, and the statement (by index in the module body) that holds each.
ALLOWED = {"LR", "WARMUP_RATIO", "DECAY", "DEPTH", "HEX_MASK", "BETA2", "NEG_INT", "WINDOW", "REASSIGNED"}


def _module_constants(tree: ast.Module) -> dict[int, tuple[str, object]]:
    """Statement index -> (name, literal value) for single-name module-level assignments."""
    found: dict[int, tuple[str, object]] = {}
    for i, stmt in enumerate(tree.body):
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                found[i] = (target.id, ast.literal_eval(value))
            except ValueError:
                pass
    return found


def _allowed_indices(tree: ast.Module, allowed: set[str]) -> set[int]:
    last: dict[str, int] = {}
    for i, (name, _) in _module_constants(tree).items():
        last[name] = i
    return {i for name, i in last.items() if name in allowed}


def _skeleton(tree: ast.Module, indices: set[int]) -> str:
    """The AST dump with the values of the given statements blanked out."""
    tree = ast.parse(ast.unparse(tree))  # a copy
    for i in indices:
        tree.body[i].value = ast.Constant(None)  # type: ignore[attr-defined]
    return ast.dump(tree)


def _changes(old_source: str, new_source: str, allowed: set[str]) -> dict[str, tuple[object, object]]:
    """name -> (old, new) for every constant that changed; asserts nothing else did."""
    old_tree, new_tree = ast.parse(old_source), ast.parse(new_source)
    indices = _allowed_indices(old_tree, allowed)
    assert _skeleton(old_tree, indices) == _skeleton(new_tree, indices), "something besides a constant changed"
    old_values, new_values = _module_constants(old_tree), _module_constants(new_tree)
    return {
        old_values[i][0]: (old_values[i][1], new_values[i][1])
        for i in indices
        if old_values[i][1] != new_values[i][1] or type(old_values[i][1]) is not type(new_values[i][1])
    }


def _check_sane(old: object, new: object) -> None:
    assert type(new) is type(old), f"{old!r} became {new!r}"
    assert new != old
    assert (new > 0) == (old > 0), f"{old!r} -> {new!r} crossed zero"  # type: ignore[operator]
    assert new != 0


def _last_assignment_offset(name: str) -> int:
    return [m.start() for m in re.finditer(rf"\b{name}\s*[:=]", UNUSUAL_TARGET)][-1]


def test_unusual_target_only_allowed_constants_change() -> None:
    changed_names: set[str] = set()
    for seed in range(200):
        new_source, description = perturb_constants(UNUSUAL_TARGET, seed, max_changes=3)
        changes = _changes(UNUSUAL_TARGET, new_source, ALLOWED)
        assert 1 <= len(changes) <= 3
        assert set(changes) <= ALLOWED
        for old, new in changes.values():
            _check_sane(old, new)
        # Byte for byte, only lines holding a changed constant differ.
        old_lines = UNUSUAL_TARGET.splitlines(keepends=True)
        new_lines = new_source.splitlines(keepends=True)
        assert len(old_lines) == len(new_lines)
        for before, after in zip(old_lines, new_lines):
            if before != after:
                assert any(re.search(rf"\b{name}\b", before) or name == "WINDOW" for name in changes)
                # The rest of the line (comment included) is kept.
                assert before.split("#")[1:] == after.split("#")[1:]
        # The description names each change as `NAME old -> new`.
        parts = description.split(", ")
        assert [p.split(" ")[0] for p in parts] == sorted(changes, key=_last_assignment_offset)
        assert all(re.fullmatch(r"[A-Z_0-9]+ \S+ -> \S+", p) for p in parts)
        changed_names |= set(changes)
    # Every candidate gets its turn sooner or later, the effective REASSIGNED included.
    assert changed_names == ALLOWED


def test_description_reads_like_the_source() -> None:
    source = "LR = 0.01\nBATCH_SIZE = 32\n"
    new_source, description = perturb_constants(source, seed=1, max_changes=2)
    for part in description.split(", "):
        name, old, arrow, new = part.split(" ")
        assert arrow == "->"
        assert f"{name} = {old}\n" in source
        assert f"{name} = {new}\n" in new_source


def test_reassigned_constant_only_its_last_literal_changes() -> None:
    source = "K = 1.0\nK = 2.0\nJ = 3\nJ = compute()\n"
    for seed in range(30):
        new_source, description = perturb_constants(source, seed)
        assert new_source.startswith("K = 1.0\nK = ")
        assert new_source.endswith("J = 3\nJ = compute()\n")
        assert description.startswith("K 2.0 -> ")


def test_same_seed_same_edit_different_seeds_vary() -> None:
    assert perturb_constants(UNUSUAL_TARGET, 7) == perturb_constants(UNUSUAL_TARGET, 7)
    outcomes = {perturb_constants(UNUSUAL_TARGET, seed)[0] for seed in range(20)}
    assert len(outcomes) >= 15


def test_number_of_changes_follows_max_changes() -> None:
    counts = {len(perturb_constants(UNUSUAL_TARGET, s, max_changes=2)[1].split(", ")) for s in range(60)}
    assert counts == {1, 2}
    assert {len(perturb_constants(UNUSUAL_TARGET, s, max_changes=1)[1].split(", ")) for s in range(20)} == {1}


def test_ints_always_change_and_never_reach_zero() -> None:
    for seed in range(300):
        new_source, _ = perturb_constants("ONE = 1\nMINUS_ONE = -1\nTWO = 2\n", seed, max_changes=3, scale=0.3)
        values = {name: v for name, v in (_module_constants(ast.parse(new_source))).values()}
        changes = _changes("ONE = 1\nMINUS_ONE = -1\nTWO = 2\n", new_source, {"ONE", "MINUS_ONE", "TWO"})
        assert changes
        for old, new in changes.values():
            _check_sane(old, new)
        assert values["ONE"] >= 1 and values["MINUS_ONE"] <= -1 and values["TWO"] >= 1


def test_floats_keep_three_or_four_significant_digits() -> None:
    for seed in range(50):
        new_source, _ = perturb_constants("LR = 0.0123456789\n", seed)
        new_value = new_source.split("= ")[1].strip()
        digits = re.sub(r"e.*$", "", new_value.lower()).replace(".", "").replace("-", "").lstrip("0")
        assert 1 <= len(digits) <= 4, new_value


def test_tiny_scale_still_changes_the_value() -> None:
    new_source, _ = perturb_constants("LR = 0.01\n", seed=0, scale=1e-9)
    assert new_source != "LR = 0.01\n"
    assert float(new_source.split("= ")[1]) == pytest.approx(0.01, rel=0.01)


def test_zero_bools_strings_and_expressions_are_left_alone() -> None:
    source = 'ZERO = 0\nZERO_F = 0.0\nFLAG = False\nS = "3"\nT = (1, 2)\nE = 2 ** 10\nGOOD = 5\n'
    for seed in range(20):
        new_source, description = perturb_constants(source, seed)
        assert description.startswith("GOOD 5 -> ")
        assert new_source.startswith('ZERO = 0\nZERO_F = 0.0\nFLAG = False\nS = "3"\nT = (1, 2)\nE = 2 ** 10\nGOOD = ')


def test_include_and_exclude() -> None:
    for seed in range(30):
        _, description = perturb_constants(UNUSUAL_TARGET, seed, max_changes=3, include=["DEPTH", "LR"])
        assert {p.split(" ")[0] for p in description.split(", ")} <= {"DEPTH", "LR"}
        _, description = perturb_constants(UNUSUAL_TARGET, seed, max_changes=3, exclude=["LR", "DEPTH"])
        assert not {p.split(" ")[0] for p in description.split(", ")} & {"DEPTH", "LR"}


def test_include_matching_nothing_lists_what_exists() -> None:
    with pytest.raises(MutatorError, match="DEPTH") as info:
        perturb_constants(UNUSUAL_TARGET, 0, include=["LEARNING_RATE"])
    assert "LEARNING_RATE" in str(info.value)


def test_no_constants_is_a_clear_error() -> None:
    with pytest.raises(MutatorError, match="UPPER_CASE"):
        perturb_constants("def main():\n    LR = 0.1\n\nlr = 0.1\n", 0)


def test_syntax_error_is_a_clear_error() -> None:
    with pytest.raises(MutatorError, match="not valid Python.*line 2"):
        perturb_constants("LR = 0.1\ndef (:\n", 0)


def test_crlf_bom_and_odd_spacing_are_preserved() -> None:
    source = "\ufeff# header\r\nLR   =   0.5   # tuned\r\nSTEPS\t=\t100\r\n"
    new_source, description = perturb_constants(source, 3, max_changes=2)
    assert new_source.startswith("\ufeff# header\r\n")
    assert new_source.count("\r\n") == 3 and "\n" not in new_source.replace("\r\n", "")
    assert re.fullmatch(r"\ufeff# header\r\nLR   =   \S+   # tuned\r\nSTEPS\t=\t\d+\r\n", new_source)
    assert new_source != source


def test_literal_style_is_kept() -> None:
    for seed in range(20):
        new_source, _ = perturb_constants("MASK = 0xFF\nBIG = 1_000_000\nEPS = 1e-8\n", seed, max_changes=3)
        mask, big, eps = (line.split(" = ")[1] for line in new_source.splitlines())
        assert re.fullmatch(r"0x[0-9A-F]+", mask)
        assert re.fullmatch(r"\d{1,3}(_\d{3})*", big)
        assert re.fullmatch(r"\d(\.\d+)?e-\d+", eps)


# --- the property: any table of constants ---------------------------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_names = st.builds(lambda head, tail: head + tail, st.sampled_from(_UPPER), st.text(_UPPER + "0123456789_", max_size=8))
_ints = st.integers(min_value=-(10**9), max_value=10**9).filter(lambda v: v != 0)
_floats = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False).flatmap(
    lambda v: st.sampled_from([v, -v])
)


@st.composite
def _targets(draw: st.DrawFn) -> tuple[str, dict[str, int | float]]:
    names = draw(st.lists(_names, min_size=1, max_size=8, unique=True))
    table: dict[str, int | float] = {}
    lines = ['"""Generated target."""', "import os", ""]
    for name in names:
        value = draw(st.one_of(_ints, _floats))
        text = draw(st.sampled_from([repr(value), f"{value:e}" if isinstance(value, float) else repr(value)]))
        table[name] = ast.literal_eval(text)  # what the source says, e.g. after `:e` rounding
        annotation = draw(st.sampled_from(["", ": int" if isinstance(value, int) else ": float"]))
        comment = draw(st.sampled_from(["", "  # tuned", "  # ü 0.5"]))
        lines.append(f"{name}{annotation} = {text}{comment}")
        lines.append(draw(st.sampled_from(["", "lower_case = 7", "def f():\n    INNER = 3", "print(os.sep)"])))
    return "\n".join(lines) + "\n", table


@settings(max_examples=150, deadline=None)
@given(target=_targets(), seed=st.integers(min_value=0, max_value=2**32), max_changes=st.integers(1, 4))
def test_property_any_constant_table(target: tuple[str, dict[str, int | float]], seed: int, max_changes: int) -> None:
    source, table = target
    new_source, description = perturb_constants(source, seed, max_changes=max_changes)
    changes = _changes(source, new_source, set(table))
    assert 1 <= len(changes) <= min(max_changes, len(table))
    for name, (old, new) in changes.items():
        assert old == table[name]
        _check_sane(old, new)
    assert len(description.split(", ")) == len(changes)


# --- the Mutator object ---------------------------------------------------------------------


def _request(workdir: Path, target: str = "model/train.py", **kw: object) -> MutationRequest:
    defaults: dict[str, object] = dict(program="", memory="", seed=11, timeout_seconds=30.0)
    defaults.update(kw)
    return MutationRequest(workdir=workdir, target=target, **defaults)  # type: ignore[arg-type]


def test_mutator_edits_only_the_target_in_place(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    target = tmp_path / "model" / "train.py"
    target.write_bytes(UNUSUAL_TARGET.encode())
    (tmp_path / "evaluate.py").write_text("SCORE = 1\n")
    mutator = create_mutator("params", {"max_changes": 1})
    assert isinstance(mutator, Mutator) and mutator.kind == "params"
    outcome = mutator.mutate(_request(tmp_path))
    new_source = target.read_text()
    changes = _changes(UNUSUAL_TARGET, new_source, ALLOWED)
    assert len(changes) == 1
    assert outcome.description.split(" ")[0] in changes
    assert (tmp_path / "evaluate.py").read_text() == "SCORE = 1\n"


def test_mutator_avoids_an_edit_the_swarm_already_tried(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    target = tmp_path / "model" / "train.py"
    target.write_text(UNUSUAL_TARGET)
    _, tried = perturb_constants(UNUSUAL_TARGET, 11)
    memory = f"tried so far:\n{tried} (discard, +0.002)\n"
    outcome = ParamsMutator().mutate(_request(tmp_path, memory=memory))
    assert outcome.description != tried
    assert target.read_text() != UNUSUAL_TARGET


def test_in_flight_constants_reads_only_the_ideas_being_evaluated() -> None:
    memory = (f"{words.MEMORY_IN_FLIGHT}\n- LR 3e-4 -> 4.1e-4, DEPTH 12 -> 14\n- DECAY -1.5E-2 -> -2E-2\n"
              "Tried on the current best version (newest first):\n- [keep] (+0.1) BETA2 0.95 -> 0.9\n")
    assert in_flight_constants(memory) == {"LR", "DEPTH", "DECAY"}
    assert in_flight_constants("") == set()


def test_mutator_leaves_constants_in_flight_to_the_workers_evaluating_them(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    target = tmp_path / "model" / "train.py"
    busy = sorted(ALLOWED - {"BETA2"})
    memory = f"{words.MEMORY_IN_FLIGHT}\n" + "".join(f"- {name} 1 -> 2\n" for name in busy)
    for seed in range(20):
        target.write_text(UNUSUAL_TARGET)
        outcome = ParamsMutator().mutate(_request(tmp_path, memory=memory, seed=seed))
        assert set(_changes(UNUSUAL_TARGET, target.read_text(), ALLOWED)) == {"BETA2"}, outcome.description
    # When every constant is in flight somewhere, it still edits (parallel ideas may overlap then).
    target.write_text(UNUSUAL_TARGET)
    memory += "- BETA2 0.95 -> 0.9\n"
    ParamsMutator().mutate(_request(tmp_path, memory=memory))
    assert target.read_text() != UNUSUAL_TARGET


def test_mutator_reports_missing_target_and_cancel(tmp_path: Path) -> None:
    with pytest.raises(MutatorError, match="not found"):
        ParamsMutator().mutate(_request(tmp_path, target="nope.py"))
    (tmp_path / "t.py").write_text("LR = 0.1\n")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(MutatorError, match="cancel"):
        ParamsMutator().mutate(_request(tmp_path, target="t.py", cancel=cancel))
    assert (tmp_path / "t.py").read_text() == "LR = 0.1\n"


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="params") as info:
        create_mutator("llm-of-the-future", {})
    assert isinstance(info.value, MutatorError)
    assert "llm-of-the-future" in str(info.value)
    assert KNOWN_KINDS == ("params", "llm", "command")
    assert "params, llm, command" in str(info.value)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_change": 2}, "max_change"),
        ({"max_changes": 0}, "max_changes"),
        ({"max_changes": True}, "max_changes"),
        ({"scale": -0.1}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"include": "LR"}, "include"),
        ({"exclude": [1, 2]}, "exclude"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=rf"mutator\.{key}"):
        create_mutator("params", options)


def test_options_are_used() -> None:
    mutator = create_mutator("params", {"kind": "params", "max_changes": 3, "scale": 0.1, "include": ["LR"]})
    assert mutator == ParamsMutator(max_changes=3, scale=0.1, include=("LR",))


def test_when_every_nearby_edit_is_known_the_mutator_takes_larger_steps(tmp_path: Path) -> None:
    # One int constant at 1: a small step can only reach 2, which the swarm tried already.
    (tmp_path / "t.py").write_text("X = 1\n")
    outcome = ParamsMutator().mutate(_request(tmp_path, target="t.py", memory="- [discard] X 1 -> 2\n"))
    assert outcome.description != "X 1 -> 2"
    assert (tmp_path / "t.py").read_text() != "X 1\n"


def test_when_every_edit_drawn_is_known_the_mutator_says_so_instead_of_repeating_one(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("X = 1\n")
    memory = "".join(f"- [discard] X 1 -> {k}\n" for k in range(2, 20_000))
    with pytest.raises(MutatorError, match="already in the swarm memory"):
        ParamsMutator().mutate(_request(tmp_path, target="t.py", memory=memory))
    assert (tmp_path / "t.py").read_text() == "X = 1\n", "the target is left as it was"
