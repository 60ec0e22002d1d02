"""Agent pipelining: how busy a slot's device is with a slow agent, with and without pipelining.

A real coordinator and one real worker (one slot) over loopback. The agent is a `command`
mutator that sleeps `--agent-seconds` and makes a new edit; the evaluation sleeps
`--eval-seconds`, as a GPU job would. The default is the issue's case, a 60 s agent and a
300 s evaluation, scaled down 100x in time (0.6 s and 3 s). Each evaluation notes when it
starts and ends; the busy share is the time spent evaluating between the first evaluation's
start and the last one's end, after the baseline. Run side by side: `--no-pipeline` (lease,
edit, evaluate in turn) and the default (the next edit is made while the slot evaluates).

    python benchmarks/agent_pipeline.py                     # 0.6 s agent, 3 s evaluation, 8 evaluations
    python benchmarks/agent_pipeline.py --scale 0.05 --evaluations 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoswarm.control import ControlClient  # noqa: E402
from benchmarks.search_scaling import free_port, spawn  # noqa: E402

AGENT = """
import os, time
time.sleep({seconds})
target = os.environ["AUTOSWARM_TARGET"]
n = int(time.time() * 1e6)
text = open(target).read().replace("X = ", f"X = {{n % 1000}} + 0 * ", 1)
open(target, "w").write(text)
print(f"DESCRIPTION: X {{n % 1000}}")
"""

TARGET = """X = 1.0
import time
time.sleep({seconds})
print(f"score: {{-(X - 2.5) ** 2}}")
"""

# The evaluation as the worker runs it, interpreter start included (a GPU job's imports are part
# of its evaluation too), with its start and end noted.
EVALUATE = """echo "start $(date +%s.%N)" >> {log}
python target.py
status=$?
echo "end $(date +%s.%N)" >> {log}
exit $status
"""


def busy_share(log: Path) -> tuple[float, int]:
    """(time evaluating / time from the first edit's evaluation start to the last one's end, edits).

    The first evaluation is the baseline of the champion; no edit can be judged before it ends,
    so the agent's first edit waits for it in either mode. The share is measured after it.
    """
    starts, ends = [], []
    for line in log.read_text().splitlines():
        kind, when = line.split()
        (starts if kind == "start" else ends).append(float(when))
    spans = list(zip(starts, ends))[1:]
    if len(spans) < 2:
        return 0.0, len(spans)
    busy = sum(end - start for start, end in spans)
    return busy / (spans[-1][1] - spans[0][0]), len(spans)


def run(root: Path, pipeline: bool, agent_seconds: float, eval_seconds: float, evaluations: int) -> tuple[float, int]:
    root.mkdir(parents=True)
    log = root / "timeline.log"
    study = root / "study"
    study.mkdir()
    (root / "agent.py").write_text(AGENT.format(seconds=agent_seconds))
    (study / "target.py").write_text(TARGET.format(seconds=eval_seconds))
    (study / "evaluate.sh").write_text(EVALUATE.format(log=shlex.quote(str(log))))
    (study / "program.md").write_text("Tune X.\n")
    agent = f"{sys.executable} {shlex.quote(str(root / 'agent.py'))}"
    (study / "study.toml").write_text(textwrap.dedent(f"""\
        name = "pipeline"
        target = "target.py"
        evaluate = "sh evaluate.sh"
        metric = "score"
        direction = "maximize"
        timeout = {eval_seconds * 5 + 10}
        [acceptance]
        compare = "absolute"
        [mutator]
        kind = "command"
        command = "{agent}"
        """))
    address = f"127.0.0.1:{free_port()}"
    ready = root / "ready.json"
    procs = [spawn(["coordinator", "--db", str(root / "swarm.db"), "--listen", address, "--ready-file", str(ready),
                    "--metrics-port", "0", "--auth", "none"], root / "coordinator.log")]
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if time.monotonic() > deadline:
                raise RuntimeError((root / "coordinator.log").read_text()[-2000:])
            time.sleep(0.05)
        with ControlClient(address) as control:
            control.add_study(study)
        procs.append(spawn(["worker", "--coordinator", address, "--name", "bench", "--state-dir", str(root / "w"),
                            "--mutator", "command", "--sandbox", "none", *([] if pipeline else ["--no-pipeline"])],
                           root / "worker.log"))
        limit = time.monotonic() + evaluations * (agent_seconds + eval_seconds) * 3 + 60
        while not log.exists() or busy_share(log)[1] < evaluations:
            if time.monotonic() > limit:
                raise RuntimeError("too slow:\n" + (root / "worker.log").read_text()[-3000:])
            time.sleep(0.1)
        return busy_share(log)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", type=float, default=60.0, help="agent seconds before scaling")
    parser.add_argument("--evaluation", type=float, default=300.0, help="evaluation seconds before scaling")
    parser.add_argument("--scale", type=float, default=0.01, help="time scale (0.01: 100x faster)")
    parser.add_argument("--evaluations", type=int, default=8)
    args = parser.parse_args()
    agent, evaluation = args.agent * args.scale, args.evaluation * args.scale
    print(f"agent {agent:g} s, evaluation {evaluation:g} s ({args.agent:g} s / {args.evaluation:g} s "
          f"scaled by {args.scale:g}), {args.evaluations} evaluations each")
    with tempfile.TemporaryDirectory(prefix="agent-pipeline-") as tmp:
        results = {}
        for name, pipeline in (("no pipeline", False), ("pipelined", True)):
            share, n = run(Path(tmp) / name.replace(" ", "-"), pipeline, agent, evaluation, args.evaluations)
            results[name] = share
            print(f"{name:12s} busy {share:6.1%} over {n} evaluations")
    n = args.evaluations
    # n evaluations, n - 1 waits for the agent in between: the best a plain loop can do here.
    ideal_before = n * evaluation / (n * evaluation + (n - 1) * agent)
    print(f"busy share: {results['no pipeline']:.1%} -> {results['pipelined']:.1%} "
          f"(x{results['pipelined'] / max(results['no pipeline'], 1e-9):.2f}); "
          f"without pipelining at best {ideal_before:.1%} over {n} evaluations "
          f"({evaluation / (evaluation + agent):.1%} in the long run); goal >= 97%")


if __name__ == "__main__":
    main()
