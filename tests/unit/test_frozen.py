"""`frozen.quick`: a frozen dataclass made through the quick `__init__` is the one dataclasses
would make (same fields, defaults, factories, `__post_init__`, equality and hash, attribute
layout), still frozen, and classes it cannot handle exactly are refused when defined."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import InitVar, dataclass, field

import pytest

from autoswarm.coordinator import acceptance, baselines, records, reporting, scheduler, transitions
from autoswarm.coordinator.frozen import quick


@dataclass(frozen=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: int = 4


@quick
@dataclass(frozen=True)
class Quick:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)
    d: int = 4


@quick
@dataclass(frozen=True)
class Checked:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low above high")


def test_the_quick_init_makes_what_the_dataclass_init_makes():
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((1,), {"d": 9}), ((), {"a": 2, "c": [3], "b": "y"}),
                         ((1, "x", [5], 6), {})]:
        plain, fast = Plain(*args, **kwargs), Quick(*args, **kwargs)
        assert dataclasses.astuple(plain) == dataclasses.astuple(fast)
        assert fast == Quick(*args, **kwargs) and hash(fast.b) == hash(plain.b)
    assert Quick(1).c is not Quick(1).c   # a fresh default from the factory each time
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    assert dataclasses.replace(Quick(1), d=7) == Quick(1, d=7)
    assert repr(Quick(1)) == "Quick(a=1, b='b', c=[], d=4)"
    # Made like a dataclass's own: no instance dict materialised (slower reads, 64 B more each).
    assert sys.getsizeof(Quick(1)) == sys.getsizeof(Plain(1))


@quick
@dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: int = 2


def test_a_slotted_class_works_too():
    s = Slotted(1)
    assert (s.a, s.b) == (1, 2) and not hasattr(s, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.a = 3   # type: ignore[misc]


def test_it_stays_frozen_and_keeps_the_init_errors():
    q = Quick(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.a = 2   # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick()   # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, e=3)   # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, a=2)   # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick(1, "b", [], 4, 5)   # type: ignore[call-arg]: one too many
    with pytest.raises(ValueError, match="low above high"):
        Checked(3, 2)
    assert Checked(2, 3).high == 3


def test_classes_it_cannot_handle_exactly_are_refused():
    with pytest.raises(TypeError):
        quick(dataclass(type("Loose", (), {"__annotations__": {"a": "int"}})))   # not frozen

    with pytest.raises(TypeError):
        @quick
        @dataclass(frozen=True)
        class WithInitVar:
            a: int
            scale: InitVar[int] = 1

    with pytest.raises(TypeError):
        @quick
        @dataclass(frozen=True)
        class KeywordOnly:
            a: int = field(kw_only=True)

    with pytest.raises(TypeError):
        @quick
        @dataclass(frozen=True)
        class NotInInit:
            a: int
            b: int = field(default=0, init=False)


def test_every_quick_class_of_the_coordinator_round_trips_its_fields():
    """Each record and view the hot path makes: built from its own fields' values, it equals
    the original, field for field (what `replace` and the store's reads rely on)."""
    count = 0
    for module in (acceptance, baselines, records, reporting, scheduler, transitions):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
                    and cls.__dataclass_params__.frozen):
                continue
            assert "__set__" in cls.__init__.__code__.co_freevars, f"{cls.__name__} has the slow init"
            names = [f.name for f in dataclasses.fields(cls)]
            values = {name: object() for name in names}   # any value: the init checks no types
            try:
                made = cls(**values)
            except Exception:   # a __post_init__ that checks its values: make one the plain way
                continue
            assert {name: getattr(made, name) for name in names} == values, cls
            count += 1
    assert count >= 20
