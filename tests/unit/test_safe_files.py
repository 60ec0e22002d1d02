"""The worker reads and writes scratch files without following links, and sees every kind of entry."""

from __future__ import annotations

import json
import os
import shlex
import socket
import threading

import pytest

from autoswarm import words
from autoswarm.bundle import pack_directory
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.bundles import BundleCache
from autoswarm.worker.execute import ExecutionContext, changed_paths, execute_task, snapshot
from autoswarm.worker.safe_files import NotRegularFile, entry_kind, read_regular, write_regular
from swarm import write_study


@pytest.fixture
def scratch(tmp_path):
    root = tmp_path / "scratch"
    (root / "sub").mkdir(parents=True)
    (root / "train.py").write_text("X = 1\n")
    (root / "sub" / "data.txt").write_text("data\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("the volunteer's secret\n")
    return root, secret


def test_a_regular_file_is_read_and_a_link_to_a_secret_is_refused_not_followed(scratch):
    root, secret = scratch
    assert read_regular(root, "train.py") == b"X = 1\n"
    os.symlink(secret, root / "link.py")
    with pytest.raises(NotRegularFile, match="link.py is a symbolic link, not a regular file") as info:
        read_regular(root, "link.py")
    assert info.value.kind == "symbolic link" and "secret" not in str(info.value)


def test_a_link_on_the_way_is_refused_too(scratch, tmp_path):
    root, secret = scratch
    os.symlink(tmp_path, root / "up")
    with pytest.raises(NotRegularFile, match="symbolic link on its path"):
        read_regular(root, "up/secret.txt")
    assert entry_kind(root, "up/secret.txt").startswith("symbolic link")


def test_a_fifo_is_refused_without_blocking(scratch):
    root, _ = scratch
    os.mkfifo(root / "pipe.py")
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(_kind_or_data(root, "pipe.py")), daemon=True)
    reader.start()
    reader.join(5)
    assert outcome == ["FIFO"], "reading a FIFO must neither block nor succeed"


def _kind_or_data(root, rel) -> str:
    try:
        return read_regular(root, rel).decode()
    except NotRegularFile as exc:
        return exc.kind


def test_a_directory_and_a_socket_and_a_missing_file_are_named(scratch):
    root, _ = scratch
    assert _kind_or_data(root, "sub") == "directory"
    assert _kind_or_data(root, "nothing.py") == "missing"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        assert entry_kind(root, "sock") == "socket"


def test_writing_replaces_a_link_instead_of_writing_through_it(scratch):
    root, secret = scratch
    os.symlink(secret, root / "target.py")
    write_regular(root, "target.py", b"X = 2\n")
    assert secret.read_text() == "the volunteer's secret\n", "the link's destination is untouched"
    assert entry_kind(root, "target.py") == "regular file" and read_regular(root, "target.py") == b"X = 2\n"
    os.mkfifo(root / "fifo.py")
    write_regular(root, "fifo.py", b"ok")
    assert read_regular(root, "fifo.py") == b"ok"


def test_writing_under_a_directory_replaced_by_a_link_is_refused(scratch, tmp_path):
    root, _ = scratch
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "pkg")
    with pytest.raises(NotRegularFile):
        write_regular(root, "pkg/model.py", b"escaped")
    assert list(outside.iterdir()) == []


def test_a_size_cap_stops_reading(scratch):
    root, _ = scratch
    (root / "big").write_bytes(b"x" * 5000)
    with pytest.raises(NotRegularFile, match="file over 100 bytes"):
        read_regular(root, "big", max_bytes=100)


def test_snapshot_sees_new_links_to_directories_fifos_and_empty_directories(scratch, tmp_path):
    root, _ = scratch
    before = snapshot(root)
    os.symlink(tmp_path, root / "home")          # a link to a directory: os.walk lists it as a dir
    os.mkfifo(root / "fifo")
    (root / "empty").mkdir()
    os.symlink("/etc/passwd", root / "sub" / "data2.txt")
    assert changed_paths(before, snapshot(root)) == ["empty", "fifo", "home", "sub/data2.txt"]


def test_a_target_a_setup_replaced_by_a_link_is_replaced_again_never_written_through(tmp_path):
    secret = tmp_path / "id_ed25519"
    secret.write_text("the volunteer's key\n")
    relink = f"import os; os.remove('target.py'); os.symlink({str(secret)!r}, 'target.py')"
    study = write_study(tmp_path / "study", extra_toml=f"setup = {json.dumps('python -c ' + shlex.quote(relink))}")
    bundle = pack_directory(study)
    context = ExecutionContext(cache=BundleCache(tmp_path / "cache"), scratch_root=tmp_path / "work",
                               data_root=tmp_path / "data")
    task = worker_pb2.Task(lease_id="l-1", study="tiny", kind=common_pb2.TASK_KIND_BASELINE, bundle_hash=bundle.hash,
                           bundle_size=len(bundle.data),
                           parent=common_pb2.Version(hash="p", content=b"X = 2.5\nY = 7\nprint('score: 0')\n"))
    result = execute_task(context, task, lambda _hash, download: download.write(bundle.data), threading.Event())
    assert (words.STATUS_WORDS[result.status], result.metric) == ("ok", 0.0), result.log_tail
    assert secret.read_text() == "the volunteer's key\n", "the version was not written through the link"


@pytest.mark.parametrize("make", ["link", "fifo"])
def test_a_result_file_left_as_a_link_or_fifo_is_not_read(tmp_path, make):
    secret = tmp_path / "wallet.json"
    secret.write_text('{"score": 99, "pin": 1234}')
    leave = (f"os.symlink({str(secret)!r}, os.environ['AUTOSWARM_RESULT'])" if make == "link"
             else "os.mkfifo(os.environ['AUTOSWARM_RESULT'])")
    study = write_study(tmp_path / "study", body=f"import os\n{leave}\nprint('score: 1')\n")
    bundle = pack_directory(study)
    context = ExecutionContext(cache=BundleCache(tmp_path / "cache"), scratch_root=tmp_path / "work",
                               data_root=tmp_path / "data")
    task = worker_pb2.Task(lease_id="l-1", study="tiny", kind=common_pb2.TASK_KIND_BASELINE, bundle_hash=bundle.hash,
                           parent=common_pb2.Version(hash="p", content=(study / "target.py").read_bytes()))
    result = execute_task(context, task, lambda _hash, download: download.write(bundle.data), threading.Event())
    assert (words.STATUS_WORDS[result.status], result.metric) == ("ok", 1.0), result.log_tail
    assert "pin" not in result.extra_metrics
