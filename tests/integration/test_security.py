"""Authentication and TLS on a real coordinator over loopback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from autoswarm.control import ControlClient, ControlError, open_channel
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc
from swarm import wait_for, write_study

pytestmark = pytest.mark.integration

AUTH = ("--auth", "tokens", "--lease-factor", "1", "--lease-grace", "1", "--heartbeat-interval", "0.5")


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def _state(db: Path) -> tuple:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                     for t in ("studies", "workers", "leases", "results", "tokens"))


@pytest.fixture
def secured(tmp_path, start_coordinator):
    token_file = tmp_path / "admin.token"
    coordinator = start_coordinator(*AUTH, "--admin-token-file", str(token_file))
    admin = token_file.read_text().strip()
    assert (token_file.stat().st_mode & 0o777) == 0o600, "the admin token file is private"
    with ControlClient(coordinator.address, token=admin) as control:
        control.add_study(write_study(tmp_path / "study"))
        join = control.create_token("alice").token
    channel = grpc.insecure_channel(coordinator.address)
    yield coordinator, admin, join, worker_pb2_grpc.WorkerServiceStub(channel), \
        control_pb2_grpc.ControlServiceStub(channel)
    channel.close()


def _register(stub, token: str, name: str = "w", worker_id: str = "") -> worker_pb2.RegisterResponse:
    return stub.Register(worker_pb2.RegisterRequest(worker_id=worker_id, name=name, slots=1, mutators=["params"],
                                                    hardware=common_pb2.Hardware(cpu_model="X", cpu_cores=2)),
                         metadata=_bearer(token), timeout=10)


def test_admin_token_is_stored_hashed_and_shown_once(secured, tmp_path):
    coordinator, admin, join, _, _ = secured
    with sqlite3.connect(f"file:{coordinator.db}?mode=ro", uri=True) as conn:
        hashes = [h for (h,) in conn.execute("SELECT hash FROM tokens")]
    assert admin not in hashes and join not in hashes and len(hashes) == 2
    coordinator.kill()
    coordinator.start()  # a restart does not make a new admin token
    assert coordinator.log.read_text().count("admin token") == 1
    with ControlClient(coordinator.address, token=admin) as control:
        assert [s.name for s in control.status().studies] == ["tiny"]


def test_refusals_change_nothing(secured):
    coordinator, admin, join, workers, control = secured
    registered = _register(workers, join, "alice-laptop")
    credential = registered.credential
    assert registered.owner == "alice" and credential.startswith("asw_")
    before = _state(coordinator.db)
    bundle = control_pb2.AddStudyRequest(bundle=b"\x80")
    cases = [
        # (call, expected code)
        (lambda: control.Status(control_pb2.StatusRequest(), timeout=5), grpc.StatusCode.UNAUTHENTICATED),
        (lambda: control.Status(control_pb2.StatusRequest(), metadata=_bearer("asa_wrong"), timeout=5),
         grpc.StatusCode.UNAUTHENTICATED),
        (lambda: control.AddStudy(bundle, metadata=_bearer(credential), timeout=5), grpc.StatusCode.PERMISSION_DENIED),
        (lambda: control.CreateToken(control_pb2.CreateTokenRequest(name="mallory"), metadata=_bearer(join),
                                     timeout=5), grpc.StatusCode.PERMISSION_DENIED),
        (lambda: workers.Lease(worker_pb2.LeaseRequest(worker_id=registered.worker_id), timeout=5),
         grpc.StatusCode.UNAUTHENTICATED),
        (lambda: workers.Lease(worker_pb2.LeaseRequest(worker_id=registered.worker_id), metadata=_bearer(join),
                               timeout=5), grpc.StatusCode.PERMISSION_DENIED),
        (lambda: workers.Lease(worker_pb2.LeaseRequest(worker_id=registered.worker_id), metadata=_bearer(admin),
                               timeout=5), grpc.StatusCode.PERMISSION_DENIED),
        (lambda: _register(workers, "asj_forged"), grpc.StatusCode.UNAUTHENTICATED),
    ]
    for call, expected in cases:
        assert _code(call) == expected
    assert _state(coordinator.db) == before


def test_a_credential_speaks_only_for_its_worker_and_owner_is_the_token_name(secured):
    coordinator, admin, join, workers, _ = secured
    a = _register(workers, join, "a")
    b = _register(workers, join, "b")
    task = workers.Lease(worker_pb2.LeaseRequest(worker_id=a.worker_id), metadata=_bearer(a.credential), timeout=10)
    assert task.has_task
    report = worker_pb2.ReportRequest(worker_id=a.worker_id, lease_id=task.task.lease_id, result=worker_pb2.Result(
        status=common_pb2.RESULT_STATUS_OK, has_metric=True, metric=1.0))
    assert _code(lambda: workers.Report(report, metadata=_bearer(b.credential), timeout=5)) \
        == grpc.StatusCode.PERMISSION_DENIED
    # Another join token cannot take over worker a by registering with its id.
    with ControlClient(coordinator.address, token=admin) as control:
        other = control.create_token("bob").token
    hijack = _register(workers, other, "a-again", worker_id=a.worker_id)
    assert hijack.worker_id != a.worker_id and hijack.owner == "bob"
    assert workers.Report(report, metadata=_bearer(a.credential), timeout=5).decision == "baseline"
    with ControlClient(coordinator.address, token=admin) as control:
        owners = {w.name: w.owner for w in control.status().workers}
        tokens = {t.name: t.workers for t in control.list_tokens().tokens}
    assert owners == {"a": "alice", "b": "alice", "a-again": "bob"}
    assert tokens == {"alice": 2, "bob": 1}


def test_a_stolen_worker_credential_registers_no_new_worker(secured):
    """What an evaluation without a sandbox can read is the worker's credential (docs/security.md,
    "The worker's own secrets"): with it a thief re-registers that one worker, never a new one."""
    coordinator, admin, join, workers, _ = secured
    a = _register(workers, join, "a")
    for name in ("thief-1", "thief-2"):
        again = _register(workers, a.credential, name)  # no worker id: what a new machine would send
        assert again.worker_id == a.worker_id and not again.credential, "no credential for another worker"
    assert _code(lambda: _register(workers, a.credential, "thief-3", worker_id="w-someone-else")) \
        == grpc.StatusCode.PERMISSION_DENIED
    with ControlClient(coordinator.address, token=admin) as control:
        assert [w.worker_id for w in control.status().workers] == [a.worker_id]
        assert {t.name: t.workers for t in control.list_tokens().tokens} == {"alice": 1}


def test_revoking_takes_effect_at_the_next_call(secured):
    coordinator, admin, join, workers, _ = secured
    a = _register(workers, join, "a")
    lease = worker_pb2.LeaseRequest(worker_id=a.worker_id, wait_seconds=0)
    assert workers.Lease(lease, metadata=_bearer(a.credential), timeout=5).has_task
    with ControlClient(coordinator.address, token=admin) as control:
        assert control.revoke_token("alice").revoked == 2  # the join token and the credential it issued
        before = _state(coordinator.db)
        with pytest.raises(ControlError, match="NOT_FOUND"):
            control.revoke_token("alice")
    assert _code(lambda: workers.Lease(lease, metadata=_bearer(a.credential), timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: _register(workers, join, "again")) == grpc.StatusCode.UNAUTHENTICATED
    assert _state(coordinator.db) == before


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_tls_serves_only_encrypted_clients_that_trust_its_certificate(tmp_path, start_coordinator):
    cert, key = _self_signed(tmp_path)
    coordinator = start_coordinator("--tls-cert", str(cert), "--tls-key", str(key))
    with ControlClient(coordinator.address, ca=cert) as control:
        control.add_study(write_study(tmp_path / "study"))
        assert [s.name for s in control.status().studies] == ["tiny"]
    plain = control_pb2_grpc.ControlServiceStub(grpc.insecure_channel(coordinator.address))
    assert _code(lambda: plain.Status(control_pb2.StatusRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE
    (tmp_path / "other").mkdir()
    other_cert, _ = _self_signed(tmp_path / "other")
    untrusting = control_pb2_grpc.ControlServiceStub(open_channel(coordinator.address, ca=other_cert))
    assert _code(lambda: untrusting.Status(control_pb2.StatusRequest(), timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_auth_none_refuses_to_listen_beyond_loopback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "autoswarm", "coordinator", "--db", str(tmp_path / "x.db"), "--listen",
                             "0.0.0.0:0", "--auth", "none", "--metrics-port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "loopback only" in result.stderr


def test_a_volunteer_joins_with_a_token_works_and_stops_when_revoked(tmp_path, start_coordinator, start_worker):
    token_file = tmp_path / "admin.token"
    coordinator = start_coordinator(*AUTH, "--admin-token-file", str(token_file))
    admin = token_file.read_text().strip()
    with ControlClient(coordinator.address, token=admin) as control:
        control.add_study(write_study(tmp_path / "study", sleep=0.3), max_evaluations=0)
        join = control.create_token("carol").token
    volunteer = start_worker(coordinator.address, "carol-pc", "--token", join)

    def results() -> int:
        with ControlClient(coordinator.address, token=admin) as control:
            return control.status().studies[0].evaluations

    wait_for(lambda: results() >= 3, 60, what="the volunteer's first results")
    with ControlClient(coordinator.address, token=admin) as control:
        assert {w.name: w.owner for w in control.status().workers} == {"carol-pc": "carol"}
        control.revoke_token("carol")
    volunteer.proc.wait(60)
    assert "refuses this worker" in volunteer.log
    identity = (volunteer.state_dir / "identity.json")
    assert identity.stat().st_mode & 0o777 == 0o600, "the credential is kept private"


def test_status_shows_owners_quorum_and_who_can_run_each_mutator(secured):
    coordinator, admin, join, workers, _ = secured
    from autoswarm.cli import mutator_counts

    for name, kinds in (("a", ["params"]), ("b", ["params", "llm"])):
        workers.Register(worker_pb2.RegisterRequest(name=name, slots=1, mutators=kinds), metadata=_bearer(join),
                         timeout=10)
    result = subprocess.run([sys.executable, "-m", "autoswarm", "--token", admin, "status", "--coordinator",
                             coordinator.address], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout and "absolute, quorum 1" in result.stdout
    with ControlClient(coordinator.address, token=admin) as control:
        assert mutator_counts(control.status()) == {"params": 2, "llm": 1}
