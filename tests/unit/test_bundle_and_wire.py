"""Bundles, results.tsv, and the committed protobuf stubs."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from autoswarm.bundle import BundleError, pack_directory, pack_files, unpack_bundle
from autoswarm.protogen import REPO_ROOT, generate
from autoswarm.report import results_tsv
from autoswarm.v1 import control_pb2


def test_bundle_is_content_addressed_and_skips_caches_and_outputs(tmp_path):
    (tmp_path / "train.py").write_text("X = 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"0" * 100)
    for junk in ("__pycache__/train.cpython-311.pyc", "runs/x/results.tsv", ".git/HEAD", "swarm.db"):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_text("junk")
    bundle = pack_directory(tmp_path, exclude=("data/*",))
    assert set(bundle.files) == {"train.py"}
    assert pack_directory(tmp_path, exclude=("data/*",)).hash == bundle.hash, "same files, same hash"
    (tmp_path / "train.py").write_text("X = 2\n")
    assert pack_directory(tmp_path, exclude=("data/*",)).hash != bundle.hash
    assert unpack_bundle(bundle.data) == {"train.py": b"X = 1\n"}


def test_bundle_size_cap_has_a_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0" * 2048)
    with pytest.raises(BundleError, match="add large files .* to `exclude`"):
        pack_directory(tmp_path, max_bytes=1024)


def test_unsafe_or_garbage_bundles_are_refused():
    with pytest.raises(BundleError, match="outside the study directory"):
        unpack_bundle(pack_files({"../evil.py": b"x"}).data)
    with pytest.raises(BundleError):
        unpack_bundle(b"\x93garbage")


def test_results_tsv_has_a_header_and_one_row_per_result():
    rows = [
        control_pb2.HistoryRow(version="a" * 64, kind="baseline", status="baseline", has_metric=True, metric=1.5),
        control_pb2.HistoryRow(version="b" * 64, parent="a" * 64, kind="explore", status="keep", has_metric=True,
                               metric=1.25, description="LR 0.01 -> 0.013\twith a tab"),
        control_pb2.HistoryRow(version="c" * 64, parent="b" * 64, kind="explore", status="crash",
                               description="BATCH 8 -> 80"),
    ]
    lines = results_tsv("val_loss", rows).splitlines()
    header = lines[0].split("\t")
    assert header[:4] == ["version", "val_loss", "status", "description"]
    cells = [line.split("\t") for line in lines[1:]]
    assert all(len(c) == len(header) for c in cells), "tabs inside values do not break columns"
    assert [c[2] for c in cells] == ["baseline", "keep", "crash"]
    assert cells[1][1] == "1.250000" and cells[2][1] == ""
    assert cells[1][3] == "LR 0.01 -> 0.013 with a tab"
    assert header[4:9] == ["kind", "parent", "worker", "hardware_class", "verifies_of"]


def test_committed_stubs_match_the_proto_files(tmp_path):
    generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "autoswarm" / "v1").glob("*_pb2*.py*"))
    assert generated, "protoc produced nothing"
    for rel in generated:
        committed = REPO_ROOT / rel
        assert committed.exists(), f"{rel} is not committed; run python -m autoswarm.protogen"
        assert filecmp.cmp(tmp_path / rel, committed, shallow=False), \
            f"{rel} differs from proto/; run python -m autoswarm.protogen and commit"
    committed_stubs = sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "autoswarm" / "v1").glob("*_pb2*.py*"))
    assert committed_stubs == generated, "a stub is committed for a proto file that no longer exists"
