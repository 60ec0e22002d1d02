"""Worker loops as Ray actors (`autoswarm cluster`), on a real local Ray and a real coordinator.

One Ray instance serves the whole module: starting Ray takes seconds on a small machine. Each
test uses its own coordinator and its own actor name prefix, and removes its actors at the end.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from swarm import CoordinatorProcess, _descendants, needs, wait_for, write_study

pytestmark = [
    pytest.mark.integration,
    needs(importlib.util.find_spec("ray") is not None,
          "ray is not installed: pip install -e '.[ray]' (scripts/test installs it)"),
]


def _db_rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ModuleType]:
    from autoswarm.worker.ray_pool import LOOPBACK_ENV, start_local_ray

    with pytest.MonkeyPatch.context() as env:
        env.setenv(LOOPBACK_ENV, "0")
        ray = start_local_ray(num_cpus=2, namespace="autoswarm-test")
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture
def make_pool(local_ray: ModuleType, tmp_path: Path, start_coordinator: Callable[..., CoordinatorProcess]
              ) -> Iterator[Callable[..., object]]:
    """RayPool factory; its actors are removed before the coordinator is stopped (fixture order)."""
    from autoswarm.worker.ray_pool import ActorSpec, RayPool

    pools: list[RayPool] = []

    def make(coordinator: CoordinatorProcess, prefix: str) -> RayPool:
        pool = RayPool(ActorSpec(coordinator=coordinator.address, state_root=str(tmp_path / "actors")), prefix)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.scale(0, drain_timeout=0)


def _study_on_coordinator(tmp_path: Path, start_coordinator: Callable[..., CoordinatorProcess], max_evaluations: int,
                          **study: float) -> CoordinatorProcess:
    """A coordinator (short leases) running the tiny study `tiny` with these write_study options."""
    coordinator = start_coordinator()
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", **study), max_evaluations=max_evaluations)
    return coordinator


def _loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of `pids` holds."""
    listening: dict[str, tuple[str, int]] = {}
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_host, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_host)
            # The kernel prints each 32-bit word in host (little-endian) order.
            host = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            address = ipaddress.IPv4Address(host) if family == 4 else ipaddress.IPv6Address(host)
            listening[fields[9]] = (str(address), int(hex_port, 16))
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            inode = target[len("socket:["):-1] if target.startswith("socket:[") else ""
            if inode in listening:
                found.append((pid, *listening[inode]))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def test_two_actors_improve_the_champion_and_ray_listens_on_loopback_only(tmp_path, start_coordinator, make_pool):
    coordinator = _study_on_coordinator(tmp_path, start_coordinator, 10, sleep=0.2)
    pool = make_pool(coordinator, "pair")

    assert pool.scale(2).created == ("pair-0", "pair-1")
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 60, what="study to finish")

    assert status.evaluations == 10, "the budget is a ceiling, and the study uses all of it"
    assert status.champion_metric > status.initial_metric, "maximize: the champion must have improved"
    with coordinator.control() as control:
        history = control.history("tiny")
    assert len({row.result_id for row in history.rows}) == len(history.rows)
    free = [row for row in history.rows if row.status == "duplicate" and not row.has_metric]
    assert len(history.rows) - len(free) == status.evaluations, "a duplicate caught before evaluating is free"
    assert {row.worker for row in history.rows} == {"pair-0", "pair-1"}, "both actors contributed"
    actors = [entry.status for entry in pool.statuses()]
    assert all(s is not None and s.worker_id and s.node == "127.0.0.1" for s in actors), actors
    assert sum(s.completed for s in actors) >= status.evaluations

    # Ray's own servers, the actors and the coordinator: nothing listens beyond loopback.
    sockets = _listening_sockets({os.getpid(), *_descendants(os.getpid())})
    owners = {_comm(pid) for pid, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= owners, f"the check must see Ray's servers, saw {owners}"
    if os.access(f"/proc/{actors[0].pid}/fd", os.R_OK):  # as root; to its user a non-dumpable actor is closed
        assert any(pid in {a.pid for a in actors} for pid, _, _ in sockets), "and the actors' own servers"
    exposed = [(pid, _comm(pid), host, port) for pid, host, port in sockets if not _loopback(host)]
    assert exposed == [], f"listening beyond loopback: {exposed}"


def test_actor_killed_mid_evaluation_is_restarted_and_its_lease_reissued_without_double_counting(
        tmp_path, start_coordinator, make_pool, local_ray):
    # Evaluations of 1.5 s (the timeout leaves a loaded machine room to start them), leases of
    # timeout 6 s × 1 + 1 s grace: a lost lease expires soon.
    coordinator = _study_on_coordinator(tmp_path, start_coordinator, 5, sleep=1.5, timeout=6)
    pool = make_pool(coordinator, "crash")
    pool.scale(2)
    victim_member = pool.members()[0]
    victim = pool.handle(victim_member)
    before = wait_for(lambda: (s := local_ray.get(victim.describe.remote())).worker_id and s, 30,
                      what="the actor to register")

    wait_for(lambda: any("target.py" in _cmdline(pid) for pid in _descendants(before.pid)), 30, interval=0.05,
             what="the actor's evaluation to run")
    # Killed as the kernel's OOM killer would: at once, mid-evaluation (`ray.kill` only asks the
    # actor to exit, and a loaded machine lets it finish and report the evaluation first).
    os.kill(before.pid, signal.SIGKILL)
    wait_for(lambda: not _running(before.pid), 30, interval=0.05, what="the actor's process to end")
    # What it held now: the task it was evaluating, the next one if it had leased it ahead
    # (pipelined slots), and any result its outbox held unsent (or unacknowledged) at its death.
    # The outbox survives in the state dir, and the restarted actor sends it: such a lease is
    # reported if that happens before its deadline, else refused. The others can only expire.
    held = [lease for (lease,) in _db_rows(coordinator.db, "SELECT id FROM leases WHERE state='active' AND "
                                          "worker_id=? ORDER BY issued", before.worker_id)]
    outbox = tmp_path / "actors" / victim_member.worker_name / "outbox"
    unsent = {lease for lease in held if (outbox / f"{lease}.msgpack").exists()}
    lost = [lease for lease in held if lease not in unsent]
    assert 1 <= len(lost) <= 2, (held, unsent)
    lost_lease = lost[0]

    after = wait_for(lambda: _described(local_ray, victim, before.pid), 60, what="Ray to restart the actor")
    assert after.pid != before.pid
    assert after.worker_id == before.worker_id, "same state dir: the restarted worker keeps its identity"
    assert len(pool.members()) == 2 and pool.members()[0] == victim_member, "restarted under its own name"
    status = wait_for(lambda: (s := coordinator.study("tiny")).done and s, 90, what="study to finish")

    for lease in lost:
        assert _db_rows(coordinator.db, "SELECT state FROM leases WHERE id=?", lease) == [("expired",)]
        assert _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE id=?", lease) == [(0,)]
    for lease in unsent:  # sent by the restarted actor: kept if in time, else refused; never counted twice
        (state,), = _db_rows(coordinator.db, "SELECT state FROM leases WHERE id=?", lease)
        assert (state, _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE id=?", lease)) in \
            {("reported", [(1,)]), ("expired", [(0,)])}
    (kind, candidate), = _db_rows(coordinator.db, "SELECT kind, candidate FROM leases WHERE id=?", lost_lease)
    if kind == "baseline":  # the same work, identifiable: the champion measured again by a new lease
        assert _db_rows(coordinator.db, "SELECT COUNT(*) FROM leases WHERE kind='baseline' AND candidate=? "
                        "AND state='reported' AND id!=?", candidate, lost_lease)[0][0] >= 1
    results = _db_rows(coordinator.db, "SELECT id FROM results")
    reported = _db_rows(coordinator.db, "SELECT id FROM leases WHERE state='reported'")
    free = _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE status='duplicate'")[0][0]
    assert len(results) - free == status.evaluations == 5, "every evaluation counted once (duplicates are free)"
    assert sorted(results) == sorted(reported), "one result per reported lease, none for the lost one"


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _described(ray: ModuleType, actor: object, old_pid: int) -> object | None:
    """The actor's status once a new process answers with a registered worker, else None."""
    try:
        status = ray.get(actor.describe.remote(), timeout=5)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None  # still restarting
    return status if status.pid != old_pid and status.worker_id else None


def test_scaling_from_one_actor_to_two_and_back_while_a_study_runs(tmp_path, start_coordinator, make_pool):
    coordinator = _study_on_coordinator(tmp_path, start_coordinator, 500, sleep=0.5)
    pool = make_pool(coordinator, "elastic")

    def results_by(worker: str, since: float = 0.0) -> int:
        return _db_rows(coordinator.db, "SELECT COUNT(*) FROM results WHERE worker_name=? AND created>?",
                        worker, since)[0][0]

    assert pool.scale(1).created == ("elastic-0",)
    wait_for(lambda: results_by("elastic-0") >= 2, 60, what="results from the first actor")

    grown = pool.scale(2)
    assert grown.created == ("elastic-1",) and grown.kept == ("elastic-0",)
    assert pool.scale(2).created == (), "scaling to the same size changes nothing"
    wait_for(lambda: results_by("elastic-1") >= 2, 60, what="results from the second actor")
    leaving = next(e.status for e in pool.statuses() if e.member.worker_name == "elastic-1")
    assert leaving is not None

    shrunk = pool.scale(1, drain_timeout=30)
    shrunk_at = time.time()
    assert shrunk.removed == ("elastic-1",) and shrunk.kept == ("elastic-0",)
    wait_for(lambda: [m.worker_name for m in pool.members()] == ["elastic-0"], 30, what="the actor to be gone")
    # Drained, not killed: it finished its task, reported, and holds no lease.
    assert _db_rows(coordinator.db, "SELECT COUNT(*) FROM leases WHERE worker_id=? AND state='active'",
                    leaving.worker_id) == [(0,)]
    wait_for(lambda: results_by("elastic-0", since=shrunk_at) >= 2, 60, what="the study to go on with one actor")
    assert results_by("elastic-1", since=shrunk_at) == 0
    assert coordinator.study("tiny").champion_metric > coordinator.study("tiny").initial_metric


def test_run_with_ray_searches_the_study_with_actor_workers(tmp_path, local_ray):
    """`autoswarm run --ray`, in this process: it uses the Ray already running (starting a second
    one on a small shared machine is what this module avoids) and leaves it running."""
    from autoswarm.local_run import RunOptions, run_study

    study = write_study(tmp_path / "study", sleep=0.1)
    out = tmp_path / "out"
    summary = run_study(RunOptions(study, workers=2, max_evals=8, duration=120, out=out, ray=True))

    assert summary.evaluations == 8 and summary.best_metric is not None
    lines = summary.results_path.read_text().splitlines()
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    assert len(rows) >= summary.evaluations + summary.failed_edits, "every evaluation and failed edit has its row"
    assert {row[header.index("worker")] for row in rows} <= {"local-0", "local-1"}
    assert (out / "workers" / "local-0" / "worker.log").exists(), "each actor logs into its own state dir"
    assert local_ray.is_initialized() and not [n for n in local_ray.util.list_named_actors() if "local" in n]


def test_cluster_command_leaves_detached_actors_behind_and_resizes_or_replaces_them(
        tmp_path, start_coordinator, local_ray, monkeypatch):
    """`autoswarm cluster` as an operator runs it: a driver that joins Ray, reconciles, and exits;
    against a coordinator with tokens on, as any coordinator beyond loopback has them."""
    from autoswarm.worker.ray_pool import ActorSpec, RayPool

    admin_file = tmp_path / "admin.token"
    coordinator = start_coordinator("--auth", "tokens", "--lease-factor", "1", "--lease-grace", "1",
                                    "--heartbeat-interval", "0.5", "--admin-token-file", str(admin_file))
    monkeypatch.setenv("AUTOSWARM_TOKEN", admin_file.read_text().strip())  # for this test's control calls
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", sleep=0.2), max_evaluations=200)
        join = control.create_token("lab").token
    state = tmp_path / "actors"
    join_file = tmp_path / "join.token"  # never on the command line, which every user can read
    join_file.write_text(join + "\n")
    join_file.chmod(0o600)

    def cluster(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "autoswarm", "cluster", "--coordinator", coordinator.address,
             "--token-file", str(join_file),
             "--ray-address", local_ray.get_runtime_context().gcs_address, "--namespace", "autoswarm-test",
             "--name", "cli", "--state-dir", str(state), "--drain-timeout", "20", *args],
            capture_output=True, text=True, timeout=120)  # inherits the loopback setting of local_ray
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    # The pool as this test process sees it, to list the actors the commands left behind.
    pool = RayPool(ActorSpec(coordinator=coordinator.address), "cli")
    try:
        assert "2 started, 0 removed, 0 kept" in cluster("--workers", "2")
        first = pool.members()
        assert [m.worker_name for m in first] == ["cli-0", "cli-1"], "the actors outlive the command"
        wait_for(lambda: coordinator.study("tiny").evaluations >= 4, 60, what="the actors to work")
        owners = dict(_db_rows(coordinator.db, "SELECT name, owner FROM workers"))
        assert owners == {"cli-0": "lab", "cli-1": "lab"}, "registered with the join token"

        assert "1 started, 2 removed, 0 kept" in cluster("--workers", "1", "--cpus-per-worker", "0.5")
        (survivor,) = pool.members()
        assert survivor.worker_name == "cli-0" and survivor.digest != first[0].digest, "replaced: new spec"
        assert "0 started, 1 removed, 0 kept" in cluster("--workers", "0")
        assert pool.members() == []
    finally:
        pool.scale(0, drain_timeout=0)


THREADS_BODY = ("import os\n"
                "print('threads:', ' '.join(f'{n}={os.environ.get(n, \"-\")}' for n in "
                "('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMEXPR_NUM_THREADS')))\n"
                "print(f'score: {-(X - 2.5) ** 2}')\n")


def test_an_actor_hides_its_join_token_and_gives_each_slot_its_share_of_the_cpus_ray_gives_it(
        tmp_path, start_coordinator, local_ray, monkeypatch):
    """As `autoswarm worker` and `autoswarm run` do for local workers: the actor's process is
    made non-dumpable and drops its join token (here from the node's environment, as a
    Kubernetes Secret gives it); its evaluations get a share of the actor's CPUs, not threads
    for every core of the node (Ray sets only OMP_NUM_THREADS, to all of them)."""
    from autoswarm.worker.ray_pool import ActorSpec, WorkerActor

    admin_file = tmp_path / "admin.token"
    coordinator = start_coordinator("--auth", "tokens", "--admin-token-file", str(admin_file))
    monkeypatch.setenv("AUTOSWARM_TOKEN", admin_file.read_text().strip())
    with coordinator.control() as control:
        control.add_study(write_study(tmp_path / "study", body=THREADS_BODY), max_evaluations=4)
        join = control.create_token("lab").token
    spec = ActorSpec(coordinator=coordinator.address, cpus=2, slots=2, state_root=str(tmp_path / "actors"))
    actor = local_ray.remote(WorkerActor).options(
        name="guarded-0@test", num_cpus=2, max_restarts=0,
        runtime_env={"env_vars": {"AUTOSWARM_JOIN_TOKEN": join}}).remote("guarded-0", spec)
    try:
        status = wait_for(lambda: (s := local_ray.get(actor.describe.remote(), timeout=60)).worker_id and s, 60,
                          what="the actor to register")
        assert status.dumpable is False and status.guard.startswith("worker process: not dumpable"), status.guard
        try:
            environ = Path(f"/proc/{status.pid}/environ").read_bytes()
        except PermissionError:  # not root: another process of its user, which is what non-dumpable shuts out
            assert os.geteuid() != 0
        else:  # root may read it: the token is starred out
            assert join.encode() not in environ and b"AUTOSWARM_JOIN_TOKEN=" + b"*" * len(join) in environ
        assert dict(_db_rows(coordinator.db, "SELECT name, owner FROM workers")) == {"guarded-0": "lab"}

        wait_for(lambda: coordinator.study("tiny").done, 90, what="the study to finish")
        tails = [tail for (tail,) in _db_rows(coordinator.db, "SELECT log_tail FROM results")]
        shares = {line for tail in tails for line in tail.splitlines() if line.startswith("threads:")}
        assert shares == {"threads: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "
                          "NUMEXPR_NUM_THREADS=1"}, "2 CPUs for 2 slots: one thread each"
    finally:
        local_ray.kill(actor, no_restart=True)
