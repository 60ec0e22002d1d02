"""A study explored by the `llm` mutator: real coordinator and worker processes, a fake model server.

The model server runs in the test process on loopback. It reads the current target out of the
prompt, as a model would, and answers a SEARCH/REPLACE edit that moves the constants toward the
optimum, so the champion can only improve if the prompt, the edit and the plumbing all work.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fake_llm import FakeChatServer, Status
from swarm import free_port, wait_for, write_study

pytestmark = pytest.mark.integration

KEY = "sk-e2e-Narwhal4Pangolin8Okapi"
_TARGET_SECTION = re.compile(r"## The current `target.py`\s*```python\n(.*?)```", re.DOTALL)


def _improving_edit(body: dict[str, Any], headers: dict[str, str]) -> str | Status:
    """Halve X's and Y's distance to the optimum (2.5, 7), as SEARCH/REPLACE on the shown target."""
    if headers.get("authorization") != f"Bearer {KEY}":
        return Status(401, {"error": {"message": "wrong key"}})
    prompt = body["messages"][-1]["content"]
    if body["messages"][-1]["role"] != "user" or len(body["messages"]) != 2:
        return Status(400, {"error": {"message": "expected a fresh two-message prompt"}})
    target = _TARGET_SECTION.search(prompt)
    if target is None:
        return "I cannot see the target."
    x_line = re.search(r"^X = (.+)$", target.group(1), re.MULTILINE)
    y_line = re.search(r"^Y = (.+)$", target.group(1), re.MULTILINE)
    x, y = float(x_line.group(1)), int(y_line.group(1))
    new_x, new_y = round(x + (2.5 - x) / 2, 6), y + (1 if y < 7 else 0)
    return (f"DESCRIPTION: move X {x:g} -> {new_x:g} and Y {y} -> {new_y} toward the optimum\n\n"
            f"<<<<<<< SEARCH\n{x_line.group(0)}\n{y_line.group(0)}\n=======\nX = {new_x!r}\nY = {new_y}\n"
            ">>>>>>> REPLACE\n")


def test_the_llm_mutator_improves_the_champion_with_worker_side_settings(
        tmp_path: Path, monkeypatch, start_coordinator, start_worker):
    # The study names a model server nobody listens on and a model the fake server would not
    # accept: only the worker's own --llm-* settings can make this study progress.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    study = write_study(tmp_path / "study", extra_toml=(
        f'[mutator]\nkind = "llm"\nmodel = "study-model"\nbase_url = "{dead}"\nretries = 1\nretry_delay = 0\n'))
    monkeypatch.setenv("AUTOSWARM_E2E_KEY", KEY)  # the worker process inherits it
    with FakeChatServer(fallback=_improving_edit) as server:
        coordinator = start_coordinator()
        with coordinator.control() as control:
            control.add_study(study, max_evaluations=8)
        worker = start_worker(coordinator.address, "llm-worker", "--llm-base-url", server.base_url,
                              "--llm-model", "worker-model", "--llm-api-key-env", "AUTOSWARM_E2E_KEY",
                              "--llm-timeout", "20")
        status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 90, what="study to finish")
        with coordinator.control() as control:
            history = control.history("tiny")
            best = control.version("tiny")
        worker.stop()
        requests = list(server.requests)

    rows = [(row.kind, row.status, row.description) for row in history.rows]
    context = f"history: {rows}\nworker log tail:\n{worker.log[-3000:]}"
    assert requests, "the worker asked the model\n" + context
    assert {r.body["model"] for r in requests} == {"worker-model"}, "the worker's --llm-model overrides the study"
    assert all("Maximize score by tuning the constants." in r.text for r in requests), "program.md is in the prompt"
    assert status.has_initial_metric and status.has_champion_metric
    assert status.champion_metric > status.initial_metric, "the llm edits improved the champion\n" + context
    kept = [row for row in history.rows if row.status == "keep"]
    assert kept and all(row.description.startswith("move X ") for row in kept), \
        "kept versions carry the model's own descriptions"
    assert "mutator-error" not in {row.status for row in history.rows}, context
    assert best.content.decode().startswith("X = ")
    assert "llm (model=worker-model" in worker.log, "the worker logs which mutators it runs"
    everything = worker.log + coordinator.log.read_text() + "".join(
        row.description for row in history.rows) + best.content.decode()
    assert KEY not in everything, "the key never reaches a log or a result"
