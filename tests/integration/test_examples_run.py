"""`autoswarm run` end to end on the shipped examples, as the README tells a newcomer to."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swarm import needs

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(study: Path, out: Path | None, *args: str, timeout: float, cwd: Path | None = None) -> list[dict[str, str]]:
    """Runs `autoswarm run`; without `out`, in `cwd` with the default ./runs/<study>-<time>/."""
    result = subprocess.run([sys.executable, "-m", "autoswarm", "run", str(study),
                             *(["--out", str(out)] if out else []), *args],
                            capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if out is None:
        assert cwd is not None
        out, = (cwd / "runs").iterdir()
    with open(out / "results.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_quickstart_run_writes_results_best_and_db_and_improves(tmp_path):
    # As the README's first command does: relative paths, the default output directory.
    rows = _run(EXAMPLES / "quickstart", None, "--workers", "2", "--max-evals", "10", timeout=240, cwd=tmp_path)
    out, = (tmp_path / "runs").iterdir()
    # The budget is a ceiling on evaluations; a duplicate caught before evaluating is free but listed.
    evaluated = [r for r in rows if r["status"] != "duplicate"]
    assert len(evaluated) == 10, "one row per evaluation, and no evaluation past the budget"
    assert len({r["version"] for r in rows if r["kind"] == "explore"}) == len([r for r in rows if r["kind"] == "explore"])
    assert rows[0]["status"] == "baseline"
    statuses = {r["status"] for r in rows}
    assert "keep" in statuses, f"the quickstart defaults are improvable: {statuses}"
    kept = [float(r["val_loss"]) for r in rows if r["status"] == "keep"]
    assert min(kept) < float(rows[0]["val_loss"])
    best = (out / "best" / "train.py").read_bytes()
    assert best != (EXAMPLES / "quickstart" / "train.py").read_bytes()
    last_kept = [r for r in rows if r["status"] == "keep"][-1]
    assert hashlib.sha256(best).hexdigest().startswith(last_kept["version"]), "best/ holds the last kept version"
    assert (out / "swarm.db").exists()


BUMP_LR = """\
import re
from pathlib import Path

target = Path("train.py")
text = target.read_text()
old = float(re.search(r"^LEARNING_RATE = ([0-9.eE+-]+)", text, re.M).group(1))
target.write_text(re.sub(r"^LEARNING_RATE = [0-9.eE+-]+", f"LEARNING_RATE = {old * 3:.3g}", text, count=1, flags=re.M))
print(f"DESCRIPTION: LEARNING_RATE {old:g} -> {old * 3:.3g}")
"""


@pytest.mark.timeout(400)
@needs(importlib.util.find_spec("torch") is not None, "tinylm needs the torch extra (CI installs it)")
def test_tinylm_swarm_run_gives_real_val_bpb_and_keeps_an_improvement(tmp_path):
    study = tmp_path / "tinylm"
    shutil.copytree(EXAMPLES / "tinylm", study)
    toml = (study / "study.toml").read_text()
    # A short budget, and one hardware class on one machine: compare as-is with a small bar.
    toml = toml.replace("time_budget = 20", "time_budget = 5").replace('compare = "paired"', 'compare = "absolute"')
    toml = toml.replace("min_delta = 0.05", "min_delta = 0.01")
    # A scripted agent (the command mutator) that triples the learning rate: at a 5 s budget the
    # default one is far too low, so the first edit is a real improvement and the run stays short.
    (study / "bump_lr.py").write_text(BUMP_LR)
    toml = toml[:toml.index("[mutator]")] + '[mutator]\nkind = "command"\ncommand = "python bump_lr.py"\n'
    (study / "study.toml").write_text(toml)
    rows = _run(study, tmp_path / "out", "--workers", "2", "--max-evals", "3", timeout=380)
    measured = [float(r["val_bpb"]) for r in rows if r["val_bpb"]]
    assert len(measured) >= 2, rows
    assert all(math.isfinite(v) and 0 < v < 9 for v in measured), "bits per byte of a byte-level model"
    kept = [r for r in rows if r["status"] == "keep"]
    assert kept and kept[0]["description"].startswith("LEARNING_RATE 0.0003 -> 0.0009"), \
        [(r["status"], r["val_bpb"], r["description"]) for r in rows]
