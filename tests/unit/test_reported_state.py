"""A worker's reported state (heartbeats and long-polls) is stored and shown as printable text of
bounded length, whatever the worker sent (coordinator/roster.py, `reported_state`)."""

from __future__ import annotations

import sqlite3

import pytest

from autoswarm.bundle import pack_directory
from autoswarm.coordinator.engine import Engine, EngineConfig
from autoswarm.coordinator.roster import MAX_STATE_CHARS, reported_state
from autoswarm.coordinator.store import Store
from swarm import write_study

HARDWARE = {"cpu_model": "Test", "cpu_cores": 2, "gpus": []}
HOSTILE = "work\x00ing\n\t\x1b[31mred\x1b[0m\u202e" + "x" * 500


@pytest.mark.parametrize(("sent", "kept"), [
    ("idle-paused", "idle-paused"),
    ("out-of-hours", "out-of-hours"),
    ("\x00\n\t", ""),
    (HOSTILE, ("working[31mred[0m" + "x" * 500)[:MAX_STATE_CHARS]),
])
def test_reported_state_keeps_printable_text_only_and_bounds_it(sent, kept):
    assert reported_state(sent) == kept
    assert reported_state(sent).isprintable() and len(reported_state(sent)) <= MAX_STATE_CHARS


def _workers(db) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT name, state FROM workers").fetchall())


def test_heartbeats_and_long_polls_store_and_show_no_control_character(tmp_path):
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig())
    engine.add_study(pack_directory(write_study(tmp_path / "study")).data)
    beating, _ = engine.register("", "beating", HARDWARE, 1, ["params"])
    polling, _ = engine.register("", "polling", HARDWARE, 1, ["params"])
    engine.heartbeat(beating, [], HOSTILE)
    engine.next_contact(polling, polling=20.0, state=HOSTILE)
    shown = {s.record.name: s.state for s in engine.worker_summaries()}
    assert shown == {"beating": reported_state(HOSTILE), "polling": reported_state(HOSTILE)}
    engine.flush_presence()
    assert _workers(tmp_path / "swarm.db") == shown
    # Nothing printable left: the state the worker had is kept, not replaced by an empty word.
    engine.heartbeat(beating, [], "\x00\x1b")
    assert {s.record.name: s.state for s in engine.worker_summaries()}["beating"] == reported_state(HOSTILE)
