"""Arrows only point down: the CLI floor uses the coordinator, the worker and the shared kernel;
the coordinator and the worker use the kernel and never each other; the kernel uses neither.

Read from the source with `ast` (imports inside functions count too), so a lazy import cannot
hide an arrow pointing up.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The command line and what only it uses: the top floor.
FLOOR = {"cli", "local_run", "watch", "plot", "report", "control", "status_view", "screen", "credit_view",
         "__main__"}
# Upward arrows that exist today, each with who owns it; the list may only shrink.
KNOWN_UPWARD = {
    # The study schema checks [mutator] options with the worker's own mutator classes (issue 14).
    ("autoswarm.study", "autoswarm.worker.mutators"),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in ("coordinator", "worker"):
        parts = ["autoswarm", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("coordinator", "worker"):
        return parts[1]
    if len(parts) > 1 and parts[1] in FLOOR:
        return "floor"
    return "kernel"


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in ("autoswarm", "coordinator", "worker"):
        for path in (ROOT / folder).rglob("*.py"):
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("autoswarm"):
                    names.add(node.module)
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names if a.name.startswith("autoswarm"))
            found[_module(path)] = names
    return found


ALLOWED = {"floor": {"floor", "coordinator", "worker", "kernel"}, "coordinator": {"coordinator", "kernel"},
           "worker": {"worker", "kernel"}, "kernel": {"kernel"}}


def test_imports_only_point_down():
    upward = {(module, imported) for module, names in _imports().items() for imported in names
              if _layer(imported) not in ALLOWED[_layer(module)]}
    assert upward <= KNOWN_UPWARD, f"imports pointing up or sideways: {sorted(upward - KNOWN_UPWARD)}"


def test_the_layers_are_what_this_test_thinks():
    modules = _imports()
    assert _layer("autoswarm.study") == _layer("autoswarm.bundle") == _layer("autoswarm.v1.common_pb2") == "kernel"
    assert {"autoswarm.cli", "autoswarm.local_run", "autoswarm.watch", "autoswarm.plot"} <= set(modules)
    assert all(_layer(m) == "floor" for m in ("autoswarm.cli", "autoswarm.local_run", "autoswarm.watch", "autoswarm.plot"))
    assert "autoswarm.channel" in modules["autoswarm.worker.connection"], "the worker's channel comes from the kernel"
