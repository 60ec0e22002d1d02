"""Studies a worker could only fail on are refused up front: unknown mutators, bad mutator
options, a study.toml that is not UTF-8, an archive with a file twice."""

from __future__ import annotations

import os
import subprocess
import sys

import msgpack
import pytest

from autoswarm.bundle import BUNDLE_FORMAT, BundleError, pack_files, unpack_bundle
from autoswarm.coordinator.engine import Engine, EngineConfig, InvalidRequest
from autoswarm.coordinator.store import Store
from autoswarm.study import StudyError, load_study
from swarm import write_study


@pytest.mark.parametrize("table, message", [
    ('kind = "parms"', "mutator.kind: unknown mutator 'parms' (did you mean 'params'?); use one of params, llm, command"),
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
