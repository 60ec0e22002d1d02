"""A volunteer's worker with real processes on loopback: the sandbox, the donation controls,
stopping, and never losing a finished result."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from conftest import FAST_COORDINATOR
from swarm import (CoordinatorProcess, Listener, WorkerProcess, _descendants, db_rows as rows, processes_with,
                   wait_for, write_study)

pytestmark = pytest.mark.integration
# Leases that outlive anything a test waits for: a reissue seen here came from a release.
LONG_LEASES = ("--lease-factor", "2", "--lease-grace", "120", "--heartbeat-interval", "0.5")


def results(db: Path, study: str) -> list[tuple[str, str, str]]:
    """(lease id, status, log tail) of a study's results, oldest first."""
    return rows(db, "SELECT id, status, log_tail FROM results WHERE study=? ORDER BY created", study)


# -- a bubblewrapped worker meets hostile evaluations -------------------------------------------


@dataclass
class SandboxedRun:
    coordinator: CoordinatorProcess
    worker: WorkerProcess
    root: Path
    listener: Listener
    hang_marker: str
    hang_pids: list[int]


HOG = "chunks = []\nwhile True:\n    chunks.append(b'x' * (32 << 20))\n"
BOMB = "import os\nwhile True:\n    os.fork()\n"


def hang(marker: str) -> str:
    """An evaluation that starts a child, a grandchild and a daemon, then hangs past its timeout."""
    return (
        "import subprocess, sys, time\n"
        f"sleeper = 'import time; time.sleep(300)  # {marker}'\n"
        f"daemon = 'import os, time; os.setsid(); time.sleep(300)  # {marker}'\n"
        "subprocess.Popen([sys.executable, '-c', daemon])\n"
        "subprocess.Popen([sys.executable, '-c', 'import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, \"-c\", %r]); time.sleep(300)' % sleeper])\n"
        "time.sleep(300)\n"
    )


def with_child(marker: str) -> str:
    """An evaluation that starts a child carrying `marker` in its command line, then takes long."""
    return ("import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # {marker}'])\n"
            "time.sleep(120)\nprint('score: 1')\n")


def escape(port: int, outside: Path, secret: Path) -> str:
    """An evaluation that tries to reach the network, write outside scratch and read $HOME."""
    return (
        "import os, socket\n"
        "def attempt(what, action):\n"
        "    try:\n"
        "        action()\n"
        "        print('LEAK', what, flush=True)\n"
        "    except OSError as exc:\n"
        "        print('blocked', what, exc, flush=True)\n"
        f"attempt('connect', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n"
        f"attempt('write-outside', lambda: open({str(outside)!r}, 'w').write('escaped'))\n"
        f"attempt('read-home', lambda: print(open({str(secret)!r}).read()))\n"
        "attempt('write-data', lambda: open(os.path.join(os.environ['AUTOSWARM_CACHE_DIR'], 'x'), 'w').write('x'))\n"
        "open('scratch-is-writable', 'w').write('yes')\n"
        "print('score: 1')\n"
    )


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxedRun]:
    if shutil.which("bwrap") is None and not os.environ.get("CI"):  # in CI a missing bwrap must fail
        pytest.skip("bubblewrap (bwrap) is not installed; CI installs it")
    root = tmp_path_factory.mktemp("sandboxed")
    home = root / "home"
    home.mkdir()
    (home / "secret.txt").write_text("the volunteer's secret")
    listener = Listener()
    marker = f"autoswarm-hang-{uuid.uuid4().hex}"
    coordinator = CoordinatorProcess(db=root / "swarm.db", log=root / "coordinator.log", args=FAST_COORDINATOR)
    worker = WorkerProcess(coordinator.address, root / "worker", "sandboxed",
                           ("--sandbox", "bwrap", "--memory-limit", "512M", "--max-processes", "64"),
                           env={**os.environ, "HOME": str(home)})
    try:
        coordinator.start()
        with coordinator.control() as control:
            for name, body, timeout in (("hog", HOG, 30), ("bomb", BOMB, 60), ("hang", hang(marker), 4),
                                        ("escape", escape(listener.port, root / "outside.txt",
                                                          home / "secret.txt"), 30),
                                        ("tiny", None, 30)):
                control.add_study(write_study(root / name, name=name, body=body, timeout=timeout),
                                  max_evaluations=1)
        worker.start()
        # The hang study's first family, seen while it runs (later retries make new ones).
        hang_pids = wait_for(lambda: found if len(found := processes_with(marker)) >= 3 else None, 60,
                             what="the hanging evaluation's child, grandchild and daemon")
        wait_for(lambda: all(results(coordinator.db, s) for s in ("hog", "bomb", "hang", "escape")), 120,
                 what="a result from every hostile study")
        wait_for(lambda: [r for r in results(coordinator.db, "tiny") if r[1] == "ok"], 60,
                 what="the well-behaved study's evaluation")
        yield SandboxedRun(coordinator, worker, root, listener, marker, hang_pids)
    finally:
        worker.kill()
        coordinator.kill()
        listener.close()


def test_memory_hog_ends_as_resource_limit(sandboxed):
    (_, status, log_tail), *_ = results(sandboxed.coordinator.db, "hog")
    assert status == "resource-limit", log_tail
    assert log_tail.startswith("stopped by the memory limit") and "MemoryError" in log_tail


def test_fork_bomb_ends_as_resource_limit(sandboxed):
    (_, status, log_tail), *_ = results(sandboxed.coordinator.db, "bomb")
    assert status == "resource-limit", log_tail
    assert log_tail.startswith("stopped by the process limit") and "Resource temporarily unavailable" in log_tail


def test_hanging_evaluation_times_out_and_leaves_no_process_behind(sandboxed):
    (_, status, log_tail), *_ = results(sandboxed.coordinator.db, "hang")
    assert status == "timeout", log_tail
    wait_for(lambda: not set(sandboxed.hang_pids) & set(processes_with(sandboxed.hang_marker)), 30,
             what="the hanging evaluation's processes to be gone")


def test_evaluation_cannot_reach_the_network_write_outside_scratch_or_read_home(sandboxed):
    (_, status, log_tail), *_ = results(sandboxed.coordinator.db, "escape")
    assert status == "ok", log_tail
    assert "LEAK" not in log_tail
    for what in ("connect", "write-outside", "read-home", "write-data"):
        assert f"blocked {what}" in log_tail
    assert sandboxed.listener.accepted == 0
    assert not (sandboxed.root / "outside.txt").exists()
    assert "the volunteer's secret" not in log_tail


def test_worker_survives_hostile_evaluations_and_says_what_protects_it(sandboxed):
    assert sandboxed.worker.proc.poll() is None
    log = sandboxed.worker.log
    assert "isolation: bubblewrap" in log and "processes 64 (per sandbox)" in log
    assert "memory 512.0 MiB per process" in log


# -- never lose a finished result ------------------------------------------------------------


def test_result_finished_while_the_coordinator_is_down_lands_exactly_once(tmp_path, start_coordinator,
                                                                         start_worker):
    coordinator = start_coordinator(*LONG_LEASES)
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", sleep=3), max_evaluations=1)
    worker = start_worker(coordinator.address, "patient", "--sandbox", "none")
    outbox = worker.state_dir / "outbox"
    (lease_id,), = wait_for(lambda: rows(coordinator.db, "SELECT id FROM leases WHERE state='active'"), 30,
                            what="the worker's lease")
    evaluation_log = worker.state_dir / "scratch" / "slot-0" / f"{lease_id}.logs" / "evaluate.log"
    wait_for(evaluation_log.exists, 30, what="the evaluation to start")

    coordinator.kill()  # while the evaluation runs
    wait_for(lambda: list(outbox.glob("*.msgpack")), 60, what="the finished result in the outbox")
    assert worker.proc.poll() is None
    assert [p.stem for p in outbox.glob("*.msgpack")] == [lease_id]
    assert rows(coordinator.db, "SELECT COUNT(*) FROM results") == [(0,)]

    coordinator.start()  # same db, same port
    wait_for(lambda: rows(coordinator.db, "SELECT COUNT(*) FROM results") == [(1,)], 60,
             what="the result to land after the coordinator came back")
    wait_for(lambda: not list(outbox.glob("*.msgpack")), 30, what="the outbox to empty")
    (landed, status, log_tail), = rows(coordinator.db, "SELECT id, status, log_tail FROM results")
    assert (landed, status) == (lease_id, "ok"), log_tail
    assert rows(coordinator.db, "SELECT state FROM leases WHERE id=?", lease_id) == [("reported",)]
    assert "worker state: reconnecting" in worker.log


# -- donation controls -----------------------------------------------------------------------


def test_idle_only_pauses_under_load_and_resumes_and_hours_keep_a_worker_out(tmp_path, start_coordinator,
                                                                              start_worker):
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study"), max_evaluations=3)
    load = tmp_path / "load"
    load.write_text("0.9\n")
    hour = datetime.now().hour
    start_worker(coordinator.address, "night-owl", "--hours", f"{(hour + 2) % 24}-{(hour + 3) % 24}",
                 "--sandbox", "none", "--check-interval", "0.2")
    polite = start_worker(coordinator.address, "polite", "--idle-only", "--load-file", str(load),
                          "--sandbox", "none", "--check-interval", "0.2")

    def states() -> dict[str, str]:
        return {w.name: w.state for w in coordinator.status().workers}

    wait_for(lambda: states() == {"night-owl": "out-of-hours", "polite": "idle-paused"}, 60,
             what="both workers to report why they wait")
    assert coordinator.study("tiny").evaluations == 0 and coordinator.study("tiny").in_flight == 0
    assert "worker state: idle-paused — other programs use 90% of the CPUs (more than 25%)" in polite.log

    load.write_text("0.0\n")
    wait_for(lambda: coordinator.study("tiny").evaluations == 3, 60, what="the study to run once the load is gone")
    assert {r[0] for r in rows(coordinator.db, "SELECT worker_name FROM results")} == {"polite"}
    assert states()["night-owl"] == "out-of-hours"


# -- stopping --------------------------------------------------------------------------------


def test_first_sigterm_finishes_the_running_task_then_stops(tmp_path, start_coordinator, start_worker):
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", sleep=2), max_evaluations=10)
    worker = start_worker(coordinator.address, "leaving", "--sandbox", "none")
    wait_for(lambda: rows(coordinator.db, "SELECT id FROM leases WHERE state='active'"), 30, what="a lease")

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(60) == 0

    states = rows(coordinator.db, "SELECT state FROM leases")
    assert states and {s for s, in states} == {"reported"}, "the running task was finished and reported"
    assert rows(coordinator.db, "SELECT COUNT(*) FROM results") == [(len(states),)]
    assert "finishing running work, then stopping" in worker.log


def test_second_sigterm_releases_the_lease_and_the_coordinator_reissues_it_at_once(tmp_path, start_coordinator,
                                                                                   start_worker):
    marker = f"autoswarm-long-{uuid.uuid4().hex}"
    coordinator = start_coordinator(*LONG_LEASES)
    body = with_child(marker)
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", body=body, timeout=150), max_evaluations=1)
    quitter = start_worker(coordinator.address, "quitter")
    (lease_id, candidate, deadline), = wait_for(
        lambda: rows(coordinator.db, "SELECT id, candidate, deadline FROM leases WHERE state='active'"), 30,
        what="the quitter's lease")
    wait_for(lambda: processes_with(marker), 30, what="the evaluation to start")
    rescuer = start_worker(coordinator.address, "rescuer")
    wait_for(lambda: "registered as" in rescuer.log, 30, what="the rescuer to register")

    quitter.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "finishing running work" in quitter.log, 30, what="the first signal to be heard")
    quitter.proc.send_signal(signal.SIGTERM)
    assert quitter.proc.wait(60) == 0

    (state, closed), = rows(coordinator.db, "SELECT state, closed FROM leases WHERE id=?", lease_id)
    assert state == "released" and closed < deadline
    (issued,), = wait_for(lambda: rows(coordinator.db, "SELECT l.issued FROM leases l JOIN workers w ON "
                                                       "w.id = l.worker_id WHERE w.name='rescuer' AND l.candidate=?",
                                       candidate), 60, what="the released task to be reissued")
    assert issued < deadline, "reissued on release, long before the lease would have expired"
    # The quitter's evaluation died with it: every process left is the rescuer's.
    wait_for(lambda: set(processes_with(marker)) <= set(_descendants(rescuer.proc.pid)), 30,
             what="the quitter's evaluation to be gone")


def test_a_worker_killed_outright_leaves_no_evaluation_running(tmp_path, start_coordinator, start_worker):
    marker = f"autoswarm-orphan-{uuid.uuid4().hex}"
    coordinator = start_coordinator()
    body = with_child(marker)
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", body=body, timeout=300), max_evaluations=1)
    worker = start_worker(coordinator.address, "doomed")
    wait_for(lambda: processes_with(marker), 60, what="the evaluation's child to start")

    worker.crash()  # SIGKILL to the worker alone, as the OOM killer or a power button would
    wait_for(lambda: not processes_with(marker), 30, what="the orphaned evaluation to die")
