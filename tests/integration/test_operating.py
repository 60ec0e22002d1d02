"""Operating a swarm as an operator does, through the `autoswarm` command line.

A real coordinator process on loopback; workers are real processes or scripted gRPC clients
(whose scores the test decides). Every assertion is on what a person reads or gets back.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoswarm.cli import app
from autoswarm.v1 import common_pb2, worker_pb2
from scripted import ScriptedWorker, connect
from swarm import processes_with, ready_port, wait_for, write_study

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Said:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, code: int = 0, process: bool = False) -> Said:
    """Runs `autoswarm ARGS` and asserts its exit status: in a process of its own at 80 columns with
    `process`, else in this one (the same command code, without the start-up time)."""
    if process:
        done = subprocess.run([sys.executable, "-m", "autoswarm", *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "COLUMNS": "80"})
        said = Said(done.returncode, done.stdout, done.stderr)
    else:
        result = CliRunner().invoke(app, list(args))
        said = Said(result.exit_code, result.stdout, result.stderr)
    assert said.returncode == code, f"exit {said.returncode}\nstdout:\n{said.stdout}\nstderr:\n{said.stderr}"
    return said


def _x_plus(delta: float):
    """An edit that moves X toward its optimum 2.5 (from 1.0): a real improvement each time."""
    def edit(content: str, rng) -> tuple[str, str]:
        first, rest = content.split("\n", 1)
        x = float(first.split("=")[1])
        return f"X = {x + delta}\n{rest}", f"X {x} -> {x + delta}"
    return edit


def _score(content: str) -> float:
    x = float(content.split("\n", 1)[0].split("=")[1])
    return -(x - 2.5) ** 2


def test_a_study_is_added_paused_resumed_updated_and_removed_keeping_its_champion(tmp_path, start_coordinator):
    study = write_study(tmp_path / "study")
    coordinator = start_coordinator()
    address = coordinator.address

    added = cli("study", "add", str(study), "--coordinator", address, process=True).stdout
    assert "study tiny added: budget 100 evaluations" in added, "a default budget, and it is said"

    channel, stub = connect(address)
    worker = ScriptedWorker(stub, "lab[gpu] box", "Test CPU", _score, _x_plus(0.5)).register()
    assert worker.step() == "baseline"
    assert worker.step() == "keep"
    champion = coordinator.study("tiny").champion_hash

    # A task in flight, then pause: the lease is handed back, the worker hears it, nothing new is leased.
    held = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker.worker_id, wait_seconds=0), timeout=10)
    assert held.has_task
    paused = cli("study", "pause", "--coordinator", address).stdout  # the one study: no name needed
    assert "study tiny paused: 1 running task handed back" in paused
    beat = stub.Heartbeat(worker_pb2.HeartbeatRequest(worker_id=worker.worker_id, lease_ids=[held.task.lease_id],
                                                      state="working"), timeout=10)
    assert list(beat.cancelled_lease_ids) == [held.task.lease_id]
    assert worker.step() is None, "a paused study leases nothing"
    assert coordinator.study("tiny").in_flight == 0
    listed = cli("study", "list", "--coordinator", address).stdout
    assert "paused" in listed and "tiny" in listed

    cli("study", "resume", "tiny", "--coordinator", address)
    assert worker.step() == "keep", "resumed from the champion"
    champion = coordinator.study("tiny").champion_hash

    # update: a new program and new evaluation data keep champion and history; a new target does not.
    (study / "program.md").write_text("Maximize score. X matters most.\n")
    (study / "data.txt").write_text("held-out data v2\n")
    updated = cli("study", "update", str(study), "--coordinator", address).stdout
    assert "study tiny updated (data.txt, program)" in updated or "study tiny updated (data.txt, program.md" in updated
    status = coordinator.study("tiny")
    assert status.champion_hash == champion and status.improvements == 2
    lineage = cli("history", "--lineage", "--coordinator", address).stdout
    assert "study update: changed: data.txt, program.md" in lineage
    shown = " ".join(cli("study", "show", "--coordinator", address).stdout.split())
    for line in ("state running", "target target.py", "evaluate python target.py", "metric score (maximize)",
                 "of 100 evaluations", "priority 1", f"champion {champion}"):
        assert line in shown, (line, shown)
    (study / "target.py").write_text("X = 9.0\n" + (study / "target.py").read_text().split("\n", 1)[1])
    refused = cli("study", "update", str(study), "--coordinator", address, code=2).stderr
    assert "target target.py differs from the study's initial version" in " ".join(refused.split())

    # A crash: its reason is in results.tsv, in JSON, and `show` prints it with the log tail.
    task = stub.Lease(worker_pb2.LeaseRequest(worker_id=worker.worker_id, wait_seconds=0), timeout=10).task
    stub.Report(worker_pb2.ReportRequest(worker_id=worker.worker_id, lease_id=task.lease_id, result=worker_pb2.Result(
        status=common_pb2.RESULT_STATUS_CRASH, candidate=b"X = 0\n", description="divide by X", mutate_seconds=2.5,
        log_tail="Traceback (most recent call last):\n  File \"target.py\", line 3\n    1 / 0\n    ~~^~~\n"
                 "ZeroDivisionError: division by zero\n")), timeout=10)
    tsv = cli("history", "--coordinator", address).stdout.splitlines()
    header, last = tsv[0].split("\t"), dict(zip(tsv[0].split("\t"), tsv[-1].split("\t")))
    assert "reason" in header and "mutate_seconds" in header
    assert last["reason"] == "crash: ZeroDivisionError: division by zero" and last["mutate_seconds"] == "2.5"
    rows = json.loads(cli("history", "--format", "json", "--coordinator", address).stdout)["rows"]
    assert rows[-1]["reason"] == last["reason"] and rows[0]["status"] == "baseline"
    shown = cli("show", rows[-1]["result_id"], "--coordinator", address).stdout
    assert "reason       crash: ZeroDivisionError: division by zero" in shown
    assert 'File "target.py", line 3' in shown and "lab[gpu] box" in shown

    # status at 80 columns: the bracketed worker name whole, the metrics whole.
    screen = cli("status", "--coordinator", address, process=True).stdout
    assert "lab[gpu] box" in screen
    assert "-0.250000" in screen and "-2.250000" in screen, screen
    assert "…" not in screen
    assert max(len(line) for line in screen.splitlines()) <= 80

    removed = cli("study", "remove", "tiny", "--coordinator", address).stdout
    assert "study tiny removed" in removed
    assert "no studies" in cli("study", "list", "--coordinator", address).stdout
    kept = cli("history", "--db", str(coordinator.db), "--study", "tiny").stdout
    assert len(kept.splitlines()) == 1 + len(rows), "a removed study's results stay readable"
    channel.close()


def test_a_backup_taken_while_a_study_runs_restores_to_the_same_champion_and_history_and_a_stopped_worker_says_so(
        tmp_path, start_coordinator, start_worker):
    study = write_study(tmp_path / "study", sleep=0.05)
    coordinator = start_coordinator()
    cli("study", "add", str(study), "--coordinator", coordinator.address, "--max-evals", "400")
    worker = start_worker(coordinator.address, "w1")
    wait_for(lambda: coordinator.study("tiny").evaluations >= 5, 60, what="a few evaluations")
    backup = tmp_path / "backups" / "swarm-backup.db"
    said = cli("backup", str(backup), "--db", str(coordinator.db)).stderr
    assert f"to {backup}: 1 study" in said
    assert coordinator.study("tiny").evaluations > 0, "the coordinator ran on"
    cli("backup", str(backup), "--db", str(coordinator.db), code=2)  # never overwrites

    def rows(db: Path, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(sql).fetchall()

    history_sql = "SELECT id, version, status, metric, decision FROM results ORDER BY created, id"
    chain_sql = "SELECT seq, version, metric FROM champions ORDER BY seq"
    saved_results, saved_chain = rows(backup, history_sql), rows(backup, chain_sql)
    assert saved_results and rows(backup, "PRAGMA integrity_check") == [("ok",)]
    # A worker stopped cleanly says so: `stopped`, not `working` and then `offline`.
    worker.stop(timeout=30)
    assert worker.proc.returncode == 0
    assert {w.name: w.state for w in coordinator.status().workers} == {"w1": "stopped"}
    coordinator.kill()
    # The backup is a moment of the live database: everything in it is in the live one too.
    live_ids = {r[0] for r in rows(coordinator.db, history_sql)}
    assert {r[0] for r in saved_results} <= live_ids

    # Restore as documented: the backup in place of the db, a coordinator started on it.
    restored = tmp_path / "restored" / "swarm.db"
    restored.parent.mkdir()
    restored.write_bytes(backup.read_bytes())
    again = start_coordinator(db=restored)
    assert again.study("tiny").champion_hash == saved_chain[-1][1]
    header, *tsv = cli("history", "--coordinator", again.address).stdout.splitlines()
    column = header.split("\t").index("result_id")
    assert [line.split("\t")[column] for line in tsv] == [r[0] for r in saved_results]
    best = cli("best", "--coordinator", again.address).stdout
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as conn:
        content = conn.execute("SELECT content FROM versions WHERE hash=?", (saved_chain[-1][1],)).fetchone()[0]
    assert best.encode() == bytes(content), "best without -o prints the champion"


def test_run_under_nohup_stopped_by_sigterm_from_a_folder_that_shadows_the_package_leaves_no_process(
        tmp_path):
    # The parent of a clone holds a folder named autoswarm: children must still import the real package.
    shadow = tmp_path / "autoswarm"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing folder was imported')\n")
    study = write_study(tmp_path / "study", sleep=0.1)
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("autoswarm")
    # Under nohup, as an operator leaves a long run: SIGTERM is then the only way to stop it.
    run = subprocess.Popen(["nohup", str(script), "run", str(study), "--out", str(out), "--workers", "2",
                            "--max-evals", "100000", "--duration", "300", "--stop-grace", "20"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        port = wait_for(lambda: (out / "coordinator.json").exists() and ready_port(out / "coordinator.json"), 60,
                        what="the coordinator")
        from autoswarm.control import ControlClient

        with ControlClient(f"127.0.0.1:{port}", timeout=10) as control:
            wait_for(lambda: control.status().studies and control.status().studies[0].evaluations >= 3, 90,
                     what="evaluations")
        children = processes_with(str(out))
        assert len(children) >= 3, "a coordinator and two workers"
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, stderr
    assert "stopped early; resume with: autoswarm run" in stderr
    assert processes_with(str(out)) == [], "no coordinator or worker left behind"
    lines = (out / "results.tsv").read_text().splitlines()
    assert len(lines) >= 4 and "ImportError" not in (out / "logs" / "worker-1.log").read_text()
    assert (out / "best" / "target.py").exists()

    # Resume in the same --out after editing program.md: the same study goes on, updated.
    (study / "program.md").write_text("Maximize score; X matters most.\n")
    budget = len(lines) - 1 + 2
    resumed = subprocess.run([str(script), "run", str(study), "--out", str(out), "--workers", "1",
                              "--max-evals", str(budget), "--duration", "120"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    rows = (out / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) >= budget and [r.split("\t")[-1] for r in rows[:len(lines) - 1]] == \
        [r.split("\t")[-1] for r in lines[1:]], "the history carried on"
    lineage = cli("history", "--lineage", "--db", str(out / "swarm.db")).stdout
    assert "study update: changed: program.md" in lineage
    assert processes_with(str(out)) == []
