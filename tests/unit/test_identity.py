"""The worker's identity file (worker/registration.py) and its state directory: the credential
is readable by the worker's user only, and a file for another coordinator is not used; and
registering, which a first stop request ends while the coordinator is away."""

from __future__ import annotations

import stat
import threading

from autoswarm.worker.hardware import HardwareInfo
from autoswarm.worker.loop import Worker, WorkerOptions, private_directory
from autoswarm.worker.registration import IdentityFile
from autoswarm.worker.sandbox import configure
from swarm import free_port, wait_for


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_identity_file_is_private_even_over_a_stale_file_others_could_read(tmp_path):
    identity = IdentityFile(tmp_path / "identity.json", "coordinator.example:50051")
    stale = tmp_path / "identity.tmp"   # left by a crash, with a mode anyone may read
    stale.write_text("old")
    stale.chmod(0o644)
    identity.save("w-1", "asw_credential")
    assert _mode(tmp_path / "identity.json") == 0o600
    assert identity.load() == ("w-1", "asw_credential")
    assert IdentityFile(tmp_path / "identity.json", "elsewhere:50051").load() == ("", ""), \
        "a credential is only offered to the coordinator that issued it"


def test_an_unreadable_or_corrupt_identity_file_means_no_identity(tmp_path):
    path = tmp_path / "identity.json"
    for text in ("not json", "[1, 2]", '{"coordinator": "c"}'):
        path.write_text(text)
        assert IdentityFile(path, "c").load() == ("", "")


def test_a_new_state_directory_is_private_and_an_existing_one_is_left_alone(tmp_path):
    assert _mode(private_directory(tmp_path / "state" / "worker")) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    assert _mode(private_directory(shared)) == 0o755


def test_one_stop_request_ends_a_worker_still_waiting_for_an_unreachable_coordinator(tmp_path):
    machine = HardwareInfo(cpu_model="Test", cpu_cores=2, memory_bytes=8 << 30, gpus=(), platform="linux",
                           python_version="3")
    worker = Worker(WorkerOptions(f"127.0.0.1:{free_port()}", tmp_path / "state", slots=1), machine,
                    sandbox=configure("none"))
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(worker.run()), daemon=True)
    thread.start()
    wait_for(lambda: worker.state == "reconnecting", 30, what="the worker to find the coordinator away")
    worker.request_stop()  # the first Ctrl-C: nothing runs yet, so nothing is left to finish
    thread.join(60)
    assert done == [0] and not (tmp_path / "state" / "identity.json").exists()
