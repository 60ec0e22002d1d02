"""Frozen dataclasses that are quick to make: the records of every lease and report.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`
(its own `__setattr__` refuses), about 0.15 µs a field: a 19-field `ResultRecord` costs ~3 µs,
and a paired lease + report makes some twenty such records and views, ~50 µs of a ~350 µs
cycle in process (benchmarks/engine_cycle.py). `quick` gives such a class an `__init__` that
writes the fields straight into the instance's `__dict__` instead: the same signature, the
same defaults and default factories, `__post_init__` still called, and the instance exactly
as frozen afterwards (assignment still raises `FrozenInstanceError`).

Only plain frozen dataclasses qualify (no slots, no `InitVar`, no keyword-only fields, no
field left out of `__init__`): anything else is refused when the class is defined, not
handled differently at run time.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def quick(cls: type[T]) -> type[T]:
    """Gives a frozen dataclass an `__init__` that sets its fields through `__dict__` (see the module)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick is for frozen dataclasses")
    if "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: a dataclass with slots has no __dict__ to fill")
    fields = dataclasses.fields(cls)
    generated = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if [p.name for p in generated] != [f.name for f in fields] or \
            any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in generated) or \
            any(not f.init or f.name.startswith("_") for f in fields):
        raise TypeError(f"{cls.__name__}: quick handles plain fields only (no InitVar, kw_only, init=False or _names)")
    namespace: dict[str, Any] = {"_MISSING": dataclasses.MISSING}
    args, body = [], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_MISSING")
            body.append(f"    if {f.name} is _MISSING: {f.name} = _factory_{f.name}()")
        else:
            args.append(f.name)
    body += [f"    __fields__[{f.name!r}] = {f.name}" for f in fields]
    if hasattr(cls, "__post_init__"):
        body.append(f"    __self__.__post_init__()")
    source = (f"def __init__(__self__, {', '.join(args)}) -> None:\n"
              f"    __fields__ = __self__.__dict__\n" + "\n".join(body) + "\n")
    exec(source, namespace)   # the same technique as `dataclasses` itself, from the class's own fields only
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    init.__signature__ = inspect.signature(cls.__init__)  # type: ignore[attr-defined]  # help() shows the original
    cls.__init__ = init  # type: ignore[misc]
    return cls
