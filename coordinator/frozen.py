"""Frozen dataclasses that are quick to make: the records of every lease and report.

A frozen dataclass's generated `__init__` sets each field through
`__dataclass_builtins_object__.__setattr__(self, name, value)` (its own `__setattr__`
refuses): a global and an attribute looked up again for every field. A paired lease + report
makes some twenty such records and views, ~50 µs of a ~350 µs cycle in process
(benchmarks/engine_cycle.py, sampled). `quick` gives such a class an `__init__` that calls
`object.__setattr__` bound once, as a default argument (~25% less per record): the same
signature, defaults and default factories, `__post_init__` still called, and the instance
exactly as frozen afterwards (assignment still raises `FrozenInstanceError`).

Writing the fields into `self.__dict__` instead would be 3-4 times quicker to make, but on
CPython 3.11+ it turns the instance's inline attribute values into a real dict: every later
read of a field is slower (~2x) and each instance 64 bytes bigger (measured), which a swarm's
hundred thousand worker and lease records pay for good.

Only plain frozen dataclasses qualify (no `InitVar`, no keyword-only fields, no
field left out of `__init__`): anything else is refused when the class is defined, not
handled differently at run time.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")


def quick(cls: type[T]) -> type[T]:
    """Gives a frozen dataclass an `__init__` that sets its fields with `object.__setattr__`
    bound once (see the module)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick is for frozen dataclasses")
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
            body.append(f"if {f.name} is _MISSING: {f.name} = _factory_{f.name}()")
        else:
            args.append(f.name)
    body += [f"__set__(__self__, {f.name!r}, {f.name})" for f in fields]
    if hasattr(cls, "__post_init__"):
        body.append("__self__.__post_init__()")
    # `object.__setattr__` reaches the __init__ as a free variable of its closure: one fast
    # lookup per field, and no parameter a caller could pass.
    source = (f"def __make__(__set__):\n"
              f"    def __init__(__self__, {', '.join(args)}) -> None:\n"
              + "".join(f"        {line}\n" for line in body or ["pass"]) +
              f"    return __init__\n")
    exec(source, namespace)   # the same technique as `dataclasses` itself, from the class's own fields only
    init = namespace["__make__"](object.__setattr__)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    init.__signature__ = inspect.signature(cls.__init__)  # type: ignore[attr-defined]  # help() shows the original
    cls.__init__ = init  # type: ignore[misc]
    return cls
