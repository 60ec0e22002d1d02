"""Pipelined slots with real processes: the agent edits the next task while the slot evaluates."""

from __future__ import annotations

import shlex
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from swarm import wait_for, write_study

pytestmark = pytest.mark.integration

AGENT_SECONDS = 1.0
EVALUATION_SECONDS = 2.0

# An agent of fixed duration: notes when it starts and ends, then sets X to a value it has not
# used before (so no edit is a duplicate). Every value is further from the peak at 2.5 than the
# first champion's 1.0: no edit replaces the champion, so no task leased ahead turns stale.
AGENT = """
import os, sys, time
log = {log!r}
with open(log, "a") as f:
    f.write(f"mutate-start {{time.time()}}\\n")
time.sleep({seconds})
target = os.environ["AUTOSWARM_TARGET"]
n = sum(1 for line in open(log) if line.startswith("mutate-start"))
text = open(target).read().replace("X = ", f"X = {{n}}.5 + {offset} + 0 * ", 1)
open(target, "w").write(text)
with open(log, "a") as f:
    f.write(f"mutate-end {{time.time()}}\\n")
print(f"DESCRIPTION: X set to {{n}}.5")
"""

# An evaluation of fixed duration that notes when it starts and ends.
EVALUATION = """
import time
log = {log!r}
with open(log, "a") as f:
    f.write(f"evaluate-start {{time.time()}}\\n")
time.sleep({seconds})
with open(log, "a") as f:
    f.write(f"evaluate-end {{time.time()}}\\n")
print(f"score: {{-(X - 2.5) ** 2}}")
"""


def _events(log: Path) -> dict[str, list[float]]:
    events: dict[str, list[float]] = {}
    for line in log.read_text().splitlines() if log.exists() else ():
        name, when = line.split()
        events.setdefault(name, []).append(float(when))
    return events


def _leases(db: Path, state: str) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM leases WHERE state = ?", (state,))]


def _piped_swarm(tmp_path: Path, start_coordinator, start_worker, agent_source: str, evaluation: str):
    """A coordinator with a 50-evaluation study whose `command` agent runs `agent_source`, and
    one pipelined worker on it (no sandbox)."""
    agent = tmp_path / "agent.py"
    agent.write_text(agent_source)
    study = write_study(
        tmp_path / "study", timeout=20, body=textwrap.dedent(evaluation),
        extra_toml=f'[mutator]\nkind = "command"\ncommand = "{sys.executable} {shlex.quote(str(agent))}"\n')
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=50)
    return coordinator, start_worker(coordinator.address, "piped", "--mutator", "command", "--sandbox", "none")


def test_the_next_edit_is_made_while_the_slot_evaluates_and_a_stop_hands_it_back(
        tmp_path, start_coordinator, start_worker):
    log = tmp_path / "timeline.log"
    coordinator, worker = _piped_swarm(
        tmp_path, start_coordinator, start_worker, AGENT.format(log=str(log), seconds=AGENT_SECONDS, offset=10),
        EVALUATION.format(log=str(log), seconds=EVALUATION_SECONDS))

    # Evaluations: the baseline, then edit 1, edit 2... Wait until edit 2 is evaluated and the
    # agent is already busy with edit 3.
    def third_edit_under_way() -> bool:
        events = _events(log)
        return len(events.get("evaluate-start", [])) >= 3 and len(events.get("mutate-start", [])) >= 3 \
            and len(events.get("evaluate-end", [])) == len(events["evaluate-start"]) - 1
    wait_for(third_edit_under_way, 90, what="a third evaluation with the next edit under way")
    slot_times = wait_for(lambda: [t for w in coordinator.status().workers for t in w.slot_times
                                   if t.evaluating_seconds > 0], 30, what="slot times in status")
    worker.stop()  # SIGTERM: finish the running evaluation, hand back what was leased ahead
    assert worker.proc.wait(60) == 0, worker.log[-3000:]

    events = _events(log)
    starts, ends = events["evaluate-start"], events["evaluate-end"]
    assert len(starts) == len(ends), "the evaluation running at the stop finished"
    evaluations = sorted(zip(starts, ends))
    for (_, end), (next_start, _) in zip(evaluations, evaluations[1:]):
        assert next_start >= end, "two evaluations of one slot never overlap"
    # Edit k + 1 started while edit k was evaluated (the first explore waits for the baseline).
    edits, edited = events["mutate-start"], events["mutate-end"]
    for k in range(1, len(evaluations)):
        assert edited[k - 1] <= edits[k] < evaluations[k][1], f"edit {k + 1} started while edit {k} was evaluated"
    # So ready-made edits are evaluated one after the other, without the agent's time in between.
    gaps = [b[0] - a[1] for a, b in zip(evaluations[1:], evaluations[2:])]
    assert gaps and max(gaps) < AGENT_SECONDS, f"the slot waited for its agent between evaluations: gaps {gaps}"

    released = _leases(coordinator.db, "released")
    assert len(released) == 1, "the task leased ahead went back to the coordinator"
    assert not _leases(coordinator.db, "active")
    assert f"{released[0]} was leased ahead" in worker.log
    assert slot_times[0].evaluating_seconds > slot_times[0].mutating_seconds
    assert "slot 0: evaluating" in worker.log
    with coordinator.control() as control:
        history = control.history("tiny")
    assert len(history.rows) == len(evaluations), "every finished evaluation was reported, none twice"



# An agent that moves X halfway to the peak at 2.5: every edit beats its parent. A different
# millionth each run (counted in a file) keeps two edits of one parent from being duplicates.
HALFWAY_AGENT = """
import os, re, time
time.sleep({seconds})
with open({runs!r}, "a") as f:
    f.write("run\\n")
n = len(open({runs!r}).read().split())
target = os.environ["AUTOSWARM_TARGET"]
text = open(target).read()
x = float(re.search(r"^X = (\\S+)$", text, re.M).group(1))
new = (x + 2.5) / 2 + n * 1e-6
open(target, "w").write(re.sub(r"^X = \\S+$", f"X = {{new!r}}", text, count=1, flags=re.M))
print(f"DESCRIPTION: X {{x}} -> {{new}}")
"""

# Notes the X it evaluates, then scores it.
EVALUATE_X = """
import time
with open({log!r}, "a") as f:
    f.write(f"evaluate {{X}}\\n")
time.sleep({seconds})
print(f"score: {{-(X - 2.5) ** 2}}")
"""


def test_after_a_keep_the_task_leased_ahead_on_the_old_champion_is_replaced(
        tmp_path, start_coordinator, start_worker):
    """Every edit is kept. The edit made while its predecessor was evaluated is on the champion
    that predecessor replaces: it is handed back unevaluated, and the slot's next evaluation is
    an edit of the new champion (not one stale-merged and checked again later)."""
    log = tmp_path / "evaluations.log"
    coordinator, worker = _piped_swarm(
        tmp_path, start_coordinator, start_worker, HALFWAY_AGENT.format(seconds=0.2, runs=str(tmp_path / "agent-runs")),
        EVALUATE_X.format(log=str(log), seconds=1.5))

    def rows() -> list:
        with coordinator.control() as control:
            return list(control.history("tiny").rows)
    wait_for(lambda: sum(r.status == "keep" for r in rows()) >= 3, 120, what="three kept edits")
    worker.stop()
    assert worker.proc.wait(60) == 0, worker.log[-3000:]

    history = rows()
    explores = [r for r in history if r.kind == "explore"]
    assert [r.status for r in explores] == ["keep"] * len(explores), \
        "no edit was evaluated on a champion replaced before its evaluation started"
    for before, after in zip(explores, explores[1:]):
        assert after.parent == before.version, "each evaluation after a keep is an edit of the new champion"
    released = _leases(coordinator.db, "released")
    assert any(f"{lease_id} was leased on a replaced champion or is replaced by a check" in worker.log for lease_id in released), \
        "the edit made on the old champion went back to the coordinator"
    evaluated = [line.split()[1] for line in log.read_text().splitlines()]
    assert len(evaluated) == len(history), "the stale edits were never evaluated; every evaluation was reported"
    assert not _leases(coordinator.db, "active")
