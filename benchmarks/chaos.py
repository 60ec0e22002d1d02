"""The long chaos run: SIGKILL the coordinator many times during a study (default 100).

It runs the reliability test `test_chaos_coordinator_killed_ten_times_loses_nothing_acknowledged`
with more kills, so the checks are the same: every acknowledged result stored exactly once,
the champion chain only improving, every lease resolved, workers carrying on by themselves.

    python benchmarks/chaos.py --kills 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    args = parser.parse_args()
    env = {**os.environ, "AUTOSWARM_CHAOS_KILLS": str(args.kills)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", f"timeout={600 + 10 * args.kills}",
               "tests/integration/test_reliability.py", "-k", "chaos"]
    raise SystemExit(subprocess.call(command, cwd=ROOT, env=env))


if __name__ == "__main__":
    main()
