"""Two real pipelined workers on one machine (one hardware class), paired, quorum 1, as
`autoswarm run examples/tinylm --workers 2` runs them: every merge of a stale edit is checked.

Worker a's agent raises A by one every time; worker b's raises B by one on every other of a's
champions and lowers it on the others (lines apart, so that two edits side by side merge
cleanly; a millionth more each time, so that no edit is a duplicate). Whoever reports an improvement first keeps, and the other's
improvement, of the old champion, is merged onto the new one as a claim whose claimant is that
other worker, so the keeper is the only worker that may check it. Both ways happen, in an order
the machine's timing decides. Either way the merge is checked before a keep supersedes it: the
keeper evaluates the check before the edit it leased ahead (worker/slot.py), and a keep that
comes while that check is under way, the keeper's or the claimant's, waits for it
(`StudyState.keep_waits`). Before, the workers taking turns kept superseding the merges
unchecked (8 of 9 in the failing runs), or the keeper's check came back `verify-late`.
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
target = os.environ["AUTOSWARM_TARGET"]
lines = open(target).read().splitlines(keepends=True)
# Worker a raises A by one every time; worker b raises B by one on a parent whose A is odd and
# lowers it on one whose A is even: it improves on every other of a's champions, whatever
# became of the edits it made ahead and handed back (its own count of edits would lock in step
# with those: every improving edit the one handed back).
a_value = next(float(line.split("=")[1]) for line in lines if line.startswith("A = "))
constant, step = ("A", 1) if name == "a" else ("B", 1 if round(a_value) % 2 else -1)
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

    wait_for(lambda: coordinator.study("tiny").done, 240, what="the study's 40 evaluations")
    for worker in workers:
        worker.stop()
    merges = db_rows(coordinator.db, "SELECT id, state, claimant_worker, reason, parent, version FROM claims "
                                     "WHERE origin = 'merge'")
    assert merges, "edits of a replaced champion were merged onto the new one"
    # No merge was superseded by a keep before its check came back, and no check of one came
    # back too late to count. A merge may lose only to another merge of the same champion,
    # checked and accepted first (a sibling carrying the same stale idea, checked one at a
    # time: `verification_order`), or fold into a newer merge, which checks both.
    accepted_merges = {(parent, version[:12]) for _, state, _, _, parent, version in merges if state == "accepted"}
    moved = [m for m in merges if m[1] == "superseded" and "folded" not in m[3]
             and not any(parent == m[4] and short in m[3] for parent, short in accepted_merges)]
    assert not moved, f"merges superseded unchecked: {moved} of {merges}"
    checks = db_rows(coordinator.db, "SELECT r.claim, r.worker_id, r.decision, c.claimant_worker, c.state "
                                     "FROM results r JOIN claims c ON c.id = r.claim AND c.origin = 'merge' "
                                     "WHERE r.kind = 'verify'")
    assert all(decision != "verify-late" for _, _, decision, _, _ in checks), checks
    # Checked by a worker other than its claimant, and improvements found by both accepted.
    assert all(checker != claimant for _, checker, _, claimant, _ in checks), checks
    accepted = {claim for claim, _, _, _, state in checks if state == "accepted"}
    assert accepted, f"a merge was checked and accepted: {merges}"
    # Both workers' edits are in the champion: A and B both rose.
    champion = db_rows(coordinator.db, "SELECT v.content FROM champions c JOIN versions v ON v.hash = c.version "
                                       "AND v.study = c.study ORDER BY c.seq DESC LIMIT 1")[0][0].decode()
    values = dict(line.split(" = ") for line in champion.splitlines() if line[:1] in "AB" and " = " in line)
    assert float(values["A"]) > 0 and float(values["B"]) > 0, champion
