"""Two real pipelined workers on one machine (one hardware class), paired, quorum 1, as
`autoswarm run examples/tinylm --workers 2` runs them: the merge of a stale edit is checked.

The agent raises one constant by one, A and B in turn (lines apart, so that two edits side by
side merge cleanly): every edit improves its parent. Both explore the same
champion side by side; whoever reports first keeps, and the other's edit, of the old champion,
is merged onto the new one as a claim whose claimant is that other worker. The only worker
that may check the merge is the keeper, which leased its next explore ahead while it measures
the new champion. Before, that explore ran, kept (every edit does), and superseded the merge
unchecked, every time; now the keeper hands it back unstarted and checks the merge instead.
"""

from __future__ import annotations

import shlex
import sys
import textwrap

import pytest

from conftest import FAST_COORDINATOR
from swarm import db_rows, wait_for, write_study

pytestmark = pytest.mark.integration

AGENT = """
import os
target = os.environ["AUTOSWARM_TARGET"]
with open({runs!r}, "a+") as f:   # edits take turns: A, B, A... (two edits side by side differ)
    f.write("run\\n")
    f.seek(0)
    name = "AB"[len(f.read().split()) % 2]
lines = open(target).read().splitlines(keepends=True)
for i, line in enumerate(lines):
    if line.startswith(name + " = "):
        lines[i] = f"{{name}} = {{int(line.split('=')[1]) + 1}}\\n"
        break
open(target, "w").write("".join(lines))
print(f"DESCRIPTION: {{name}} + 1")
"""

EVALUATION = """
import random, time
time.sleep(1.5)
print(f"score: {A + B + random.gauss(0.0, 0.01)}")
"""


def test_two_workers_check_the_merge_of_a_stale_edit(tmp_path, start_coordinator, start_worker):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT.format(runs=str(tmp_path / "runs.txt")))
    study = write_study(
        tmp_path / "study", timeout=20, constants="A = 0\n# -\n# -\n# -\nB = 0\n", body=textwrap.dedent(EVALUATION),
        acceptance='compare = "paired"\nquorum = 1',
        extra_toml=f'[mutator]\nkind = "command"\ncommand = "{sys.executable} {shlex.quote(str(agent))}"\n')
    coordinator = start_coordinator(*FAST_COORDINATOR)
    with coordinator.control() as control:
        control.add_study(study, max_evaluations=40)
    workers = [start_worker(coordinator.address, name, "--mutator", "command", "--sandbox", "none")
               for name in ("a", "b")]

    def checked_merges() -> list[tuple]:
        return db_rows(coordinator.db, "SELECT c.id, c.state, r.decision FROM claims c JOIN results r "
                                       "ON r.claim = c.id AND r.kind = 'verify' WHERE c.origin = 'merge'")

    wait_for(lambda: coordinator.study("tiny").done, 240, what="the study's 40 evaluations")
    for worker in workers:
        worker.stop()
    merges = db_rows(coordinator.db, "SELECT id, state, claimant_worker FROM claims WHERE origin = 'merge'")
    assert merges, "edits of a replaced champion were merged onto the new one"
    checked = checked_merges()
    assert checked, f"a merge was checked before the next keep superseded it: {merges}"
    assert any(state == "accepted" for _, state, _ in checked), checked
    # Both workers' edits are in the champion: A and B both rose.
    champion = db_rows(coordinator.db, "SELECT v.content FROM champions c JOIN versions v ON v.hash = c.version "
                                       "AND v.study = c.study ORDER BY c.seq DESC LIMIT 1")[0][0].decode()
    values = dict(line.split(" = ") for line in champion.splitlines() if line[:1] in "AB" and " = " in line)
    assert int(values["A"]) > 0 and int(values["B"]) > 0, champion
