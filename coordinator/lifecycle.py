"""What an operator may change in a running study: the pure rules behind `study update`.

A study's identity is its target's starting point and how it is measured: the target file,
the evaluate and setup commands, the metric and its direction, the time budget, the timeout
and the acceptance policy. A new bundle that keeps all of those is the same study — a new
`program.md`, new evaluation data, other mutator settings — and may replace the old bundle
while champion and history stay. Anything else is a different search and needs a new name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autoswarm.study import STUDY_FILE, Study

ACTIONS = ("pause", "resume", "remove", "")
# Study settings that define what is measured: changing one would make old scores meaningless.
FIXED_SETTINGS = ("target", "evaluate", "setup", "setup_network", "metric", "direction", "time_budget",
                  "timeout", "acceptance")


class UpdateRefused(ValueError):
    """The new bundle is not the same study; the message says what differs and what to do."""


@dataclass(frozen=True)
class UpdatePlan:
    changed: tuple[str, ...]          # files and settings that differ, for the operator and the lineage

    @property
    def detail(self) -> str:
        return "changed: " + ", ".join(self.changed) if self.changed else "no change"


def plan_update(old: Study, new: Study, old_files: Mapping[str, bytes], new_files: Mapping[str, bytes]) -> UpdatePlan:
    """Whether `new` may replace `old` in place, and what changes; raises UpdateRefused if not."""
    if new.name != old.name:
        raise UpdateRefused(f"the bundle is study {new.name!r}, not {old.name!r}")
    fixed = [key for key in FIXED_SETTINGS if getattr(old, key) != getattr(new, key)]
    if fixed:
        raise UpdateRefused(
            f"study.toml changes {', '.join(fixed)}, which define what is measured: old scores would not compare. "
            "Add it as a new study under another name instead")
    if old_files.get(old.target) != new_files.get(new.target):
        raise UpdateRefused(
            f"the target {old.target} differs from the study's initial version: the search goes on from the "
            "champion, not from the directory. Restore the original file, or add a new study")
    changed = sorted(path for path in set(old_files) | set(new_files)
                     if path != STUDY_FILE and old_files.get(path) != new_files.get(path))
    if old.program != new.program:
        changed.append("program")
    if old.mutator != new.mutator:
        changed.append("[mutator]")
    if old.exclude != new.exclude:
        changed.append("exclude")
    return UpdatePlan(tuple(changed))


def check_action(action: str) -> None:
    """Refuses an unknown lifecycle action with the list of known ones."""
    if action not in ACTIONS:
        raise ValueError(f"unknown study action {action!r}; use one of pause, resume, remove")
