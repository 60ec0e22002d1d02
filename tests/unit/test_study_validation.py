"""Studies a worker could only fail on are refused up front: unknown mutators, bad mutator
options, a study.toml that is not UTF-8, an archive with a file twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import msgpack
import pytest

from autoswarm import words
from autoswarm.bundle import BUNDLE_FORMAT, BundleError, pack_files, sha256_hex, unpack_bundle
from autoswarm.coordinator.engine import Engine, EngineConfig, InvalidRequest
from autoswarm.coordinator.store import Store
from autoswarm.study import StudyError, load_study
from autoswarm.v1 import common_pb2, worker_pb2
from autoswarm.worker.bundles import BundleCache
from autoswarm.worker.execute import ExecutionContext, execute_task
from swarm import write_study


@pytest.mark.parametrize("table, message", [
    ('kind = "parms"',
     "mutator.kind: unknown mutator 'parms' (did you mean 'params'?); use one of params, llm, command"),
    ('kind = "params"\nmax_changes = "two"', "mutator.max_changes"),
    ('kind = "params"\nscael = 0.3', "mutator.scael: unknown option for the params mutator"),
    ('kind = "llm"\ntemperature = 9', "mutator.temperature"),
    ('kind = "command"\ncommand = 42', "mutator.command: expected a command line string or a list"),
    ('kind = "command"\ntimeout = -1', "mutator.timeout: expected a positive number"),
])
def test_an_unknown_mutator_or_a_bad_option_is_a_one_line_error_naming_the_key(tmp_path, table, message):
    study = write_study(tmp_path / "s", extra_toml=f"[mutator]\n{table}\n")
    with pytest.raises(StudyError) as info:
        load_study(study)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_options_a_worker_supplies_itself_may_be_left_out(tmp_path):
    # The volunteer gives the agent command (--agent-command) or the model (--llm-model).
    for table in ('kind = "command"', 'kind = "llm"', 'kind = "command"\ntimeout = 60'):
        load_study(write_study(tmp_path / table.split()[2].strip('"'), extra_toml=f"[mutator]\n{table}\n"))


def test_a_study_toml_that_is_not_utf8_says_so_and_where(tmp_path):
    study = write_study(tmp_path / "s")
    text = (study / "study.toml").read_bytes()
    (study / "study.toml").write_bytes(text.replace(b'name = "tiny"', b'name = "t\xe9ny"'))
    with pytest.raises(StudyError, match=r"study.toml is not UTF-8 text: byte 0xe9 at line 1 .*save the file as UTF-8"):
        load_study(study)


def test_study_add_refuses_both_with_one_clear_line_and_no_traceback(tmp_path):
    bad_kind = write_study(tmp_path / "kind", extra_toml='[mutator]\nkind = "parms"\n')
    latin = write_study(tmp_path / "latin")
    (latin / "study.toml").write_bytes((latin / "study.toml").read_bytes() + b"# caf\xe9\n")
    for study, expected in ((bad_kind, "mutator.kind: unknown mutator 'parms'"), (latin, "is not UTF-8 text")):
        # Port 9 on loopback: nothing listens, and the study is refused before any connection.
        out = subprocess.run([sys.executable, "-m", "autoswarm", "study", "add", str(study), "--coordinator",
                              "127.0.0.1:9"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "COLUMNS": "300"})
        assert out.returncode != 0
        assert expected in out.stderr and "Traceback" not in out.stderr + out.stdout


def _archive(entries: list[list[object]]) -> bytes:
    return msgpack.packb({"format": BUNDLE_FORMAT, "files": entries}, use_bin_type=True)


@pytest.mark.parametrize("entries, message", [
    ([["train.py", b"a"], ["train.py", b"b"]], "two entries for 'train.py'"),
    ([["train.py", b"a"], ["./train.py", b"b"]], "two entries for 'train.py'"),
    ([["pkg", b"a"], ["pkg/mod.py", b"b"]], "'pkg' is both a file and a folder"),
])
def test_an_archive_naming_a_file_twice_is_refused(entries, message):
    with pytest.raises(BundleError, match=message):
        unpack_bundle(_archive(entries))
    assert unpack_bundle(pack_files({"a.py": b"1", "b/c.py": b"2"}).data) == {"a.py": b"1", "b/c.py": b"2"}


def test_a_coordinator_refuses_an_uploaded_study_that_is_not_utf8_or_names_an_unknown_mutator(tmp_path):
    """What `study add` checks locally, the coordinator checks again for any other client."""
    engine = Engine(Store(tmp_path / "swarm.db"), EngineConfig())
    good = {p.name: p.read_bytes() for p in write_study(tmp_path / "s").iterdir()}
    for toml, message in ((good["study.toml"] + b"# caf\xe9\n", "study.toml is not UTF-8 text: byte 0xe9"),
                          (good["study.toml"] + b'[mutator]\nkind = "parms"\n', "unknown mutator 'parms'")):
        with pytest.raises(InvalidRequest, match=message):
            engine.add_study(pack_files({**good, "study.toml": toml}).data)
    assert engine.study_summaries() == []


def _execute(tmp_path, archive: bytes) -> tuple[str, str]:
    """(status, log tail) of a baseline task whose bundle is `archive`, run by execute_task."""
    context = ExecutionContext(cache=BundleCache(tmp_path / "cache"), scratch_root=tmp_path / "work",
                               data_root=tmp_path / "data")
    task = worker_pb2.Task(lease_id="l-1", study="tiny", kind=common_pb2.TASK_KIND_BASELINE,
                           bundle_hash=sha256_hex(archive), bundle_size=len(archive),
                           parent=common_pb2.Version(hash="p", content=b"X = 1.0\n"))
    result = execute_task(context, task, lambda _hash, download: download.write(archive), threading.Event())
    return words.STATUS_WORDS[result.status], result.log_tail


def test_a_worker_reports_setup_failed_with_the_reason_for_a_duplicate_entry_or_a_non_utf8_study(tmp_path):
    good = {p.name: p.read_bytes() for p in write_study(tmp_path / "s").iterdir()}
    twice = _archive([[name, good[name]] for name in sorted(good)] + [["target.py", b"X = 9\n"]])
    assert _execute(tmp_path / "a", twice) == ("setup-failed", "could not get the study bundle: bundle has two "
                                                                "entries for 'target.py'; a study file appears once")
    latin = pack_files({**good, "study.toml": good["study.toml"] + b"# caf\xe9\n"}).data
    status, tail = _execute(tmp_path / "b", latin)
    assert status == "setup-failed" and "study.toml is not UTF-8 text: byte 0xe9" in tail
