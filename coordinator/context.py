"""What the parts of one engine share (see `engine.Engine`): its store, configuration, clock,
observers and map of live studies. One per engine; nothing here is global."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from autoswarm.coordinator.config import EngineConfig
from autoswarm.coordinator.events import EngineEvents, NoEvents
from autoswarm.coordinator.study_state import StudyState
from autoswarm.coordinator.store import Store


def _nothing() -> None:
    """The default `on_change`: nobody to tell."""


@dataclass(frozen=True)
class EngineContext:
    """The engine's shared parts. `studies` is the map of live studies: the study registry
    adds and drops them; the other parts read and change each `StudyState` in place, always
    after the store has committed."""

    store: Store
    config: EngineConfig
    clock: Callable[[], float]
    events: EngineEvents = field(default_factory=NoEvents)
    studies: dict[str, StudyState] = field(default_factory=dict)
    on_change: Callable[[], None] = _nothing   # something changed that waiting long-polls should hear
