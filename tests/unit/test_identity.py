"""The worker's identity file (worker/registration.py) and its state directory: the credential
is readable by the worker's user only, and a file for another coordinator is not used."""

from __future__ import annotations

import stat

from autoswarm.worker.loop import private_directory
from autoswarm.worker.registration import IdentityFile


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
