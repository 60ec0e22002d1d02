"""Two real pipelined workers on one machine (one hardware class), paired, quorum 1, as
`autoswarm run examples/tinylm --workers 2` runs them: the merge of a stale edit is checked.

Worker a's agent raises A by one every time; worker b's raises B by one, then lowers it, and
again (lines apart, so that two edits side by side merge cleanly; a millionth more each time,
so that no edit is a duplicate). Whoever reports an improvement first keeps, and the other's
improvement, of the old champion, is merged onto the new one as a claim whose claimant is that
other worker. The only worker that may check the merge is the keeper, which leased its next
explore ahead while it measures the new champion, before the merge existed. It now hands that
explore back unstarted and checks the merge in its place, measured beside its class's baseline
of the champion. Before, the explore ran first, and when it kept (worker a's always do), the
merge was superseded unchecked.
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

def worker_name():
    # The worker process that started this agent, up the process tree: its --name.
    pid = os.getppid()
    while pid > 1:
        args = open(f"/proc/{{pid}}/cmdline", "rb").read().split(b"\\0")
        if b"--name" in args:
            return args[args.index(b"--name") + 1].decode()
        pid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
    raise SystemExit("no worker above this agent")

name = worker_name()
with open({runs!r} + "." + name, "a+") as f:
    f.write("run\\n")
    f.seek(0)
    n = len(f.read().split())
# Worker a raises A by one every time; worker b raises B by one, then lowers it, and again.
constant, step = ("A", 1) if name == "a" else ("B", (1, -1)[n % 2])
target = os.environ["AUTOSWARM_TARGET"]
lines = open(target).read().splitlines(keepends=True)
for i, line in enumerate(lines):
    if line.startswith(constant + " = "):   # and a millionth more each time: never a duplicate
        lines[i] = f"{{constant}} = {{float(line.split('=')[1]) + step + n * 1e-6:.6f}}\\n"
        break
open(target, "w").write("".join(lines))
print(f"DESCRIPTION: {{constant}} {{step:+d}}")
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
    # A merge's check leased to the keeper while it was still measuring the champion, in the
    # place of an explore it had leased ahead and handed back unstarted.
    in_place = db_rows(coordinator.db, """
        SELECT v.id FROM leases v JOIN claims c ON c.id = v.claim AND c.origin = 'merge'
        JOIN leases b ON b.worker_id = v.worker_id AND b.kind = 'baseline' AND b.issued < v.issued AND v.issued < b.closed
        JOIN leases e ON e.worker_id = v.worker_id AND e.kind = 'explore' AND e.state = 'released'
            AND b.issued <= e.issued AND e.closed <= v.issued
        WHERE v.kind = 'verify'""")
    assert in_place, "a merge's check took the place of the keeper's explore leased ahead"
    checked = checked_merges()
    assert checked, f"a merge was checked before the next keep superseded it: {merges}"
    assert any(state == "accepted" for _, state, _ in checked), checked
    # Both workers' edits are in the champion: A and B both rose.
    champion = db_rows(coordinator.db, "SELECT v.content FROM champions c JOIN versions v ON v.hash = c.version "
                                       "AND v.study = c.study ORDER BY c.seq DESC LIMIT 1")[0][0].decode()
    values = dict(line.split(" = ") for line in champion.splitlines() if line[:1] in "AB" and " = " in line)
    assert float(values["A"]) > 0 and float(values["B"]) > 0, champion
