"""`autoswarm run` divides the machine's cores between its workers' evaluations."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

# The evaluation reports, as its metric, the thread count numerical libraries would use.
TRAIN = textwrap.dedent("""\
    import os
    SCALE = 1.0
    print(f"threads: {int(os.environ.get('OMP_NUM_THREADS', '0')) * SCALE}")
    """)


def test_two_workers_evaluate_with_their_share_of_the_cores(tmp_path):
    study = tmp_path / "threads"
    study.mkdir()
    (study / "train.py").write_text(TRAIN)
    (study / "program.md").write_text("Report the thread count.\n")
    (study / "study.toml").write_text(textwrap.dedent("""\
        name = "threads"
        target = "train.py"
        evaluate = "python train.py"
        metric = "threads"
        direction = "maximize"
        time_budget = 1
        timeout = 30
        [acceptance]
        compare = "absolute"
        [mutator]
        kind = "params"
        """))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-m", "autoswarm", "run", str(study), "--out", str(tmp_path / "out"),
                             "--workers", "2", "--max-evals", "2", "--duration", "120"],
                            capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with open(tmp_path / "out" / "results.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    baselines = [r for r in rows if r["status"] == "baseline"]
    assert baselines, rows
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {float(r["threads"]) for r in baselines} == {float(share)}
