"""The worker's bundle cache (fetch once, hash check, size cap with LRU eviction, setup once)
and its outbox (durable, oldest first, corrupt entries set aside)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from autoswarm.bundle import Bundle, BundleError, pack_files
from autoswarm.worker.bundles import BundleCache, BundleDownload
from autoswarm.worker.outbox import Outbox, OutboxEntry


def bundle(name: str, size: int = 10_000) -> Bundle:
    return pack_files({"study.toml": name.encode(), "data.bin": os.urandom(size)})


class Server:
    """Serves bundles in small chunks, as FetchBundle streams them, and counts fetches."""

    def __init__(self, *bundles: Bundle) -> None:
        self.bundles = {b.hash: b for b in bundles}
        self.fetches: list[str] = []

    def fetch(self, bundle_hash: str, download: BundleDownload) -> None:
        self.fetches.append(bundle_hash)
        data = self.bundles[bundle_hash].data
        for offset in range(0, len(data), 1000):
            download.write(data[offset:offset + 1000])


def test_a_bundle_is_fetched_once_and_unpacked(tmp_path):
    b = bundle("a")
    server = Server(b)
    cache = BundleCache(tmp_path)
    first, second = cache.get(b.hash, server.fetch), cache.get(b.hash, server.fetch)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert server.fetches == [b.hash]
    assert (second.files / "study.toml").read_bytes() == b"a"


def test_a_corrupted_download_is_refused_and_not_cached(tmp_path):
    b = bundle("a")
    cache = BundleCache(tmp_path)
    with pytest.raises(BundleError, match="failed its hash check; it will be fetched again"):
        cache.get(b.hash, lambda h, download: download.write(b.data[:-1] + b"?"))
    assert cache.get(b.hash, Server(b).fetch).cache_hit is False
    with pytest.raises(BundleError, match="bad bundle hash"):
        cache.get("../etc", Server(b).fetch)


def _endless(download: BundleDownload, sent: list[int]) -> None:
    """A hostile coordinator: chunk after chunk, far past any size it announced."""
    for _ in range(10_000):
        download.write(b"x" * 65536)
        sent.append(1)


@pytest.mark.parametrize("advertised, cap, reason", [
    (1_000, 1 << 20, "more than the advertised size (1000 bytes)"),
    (0, 200_000, "more than the bundle cap (200000 bytes)"),
])
def test_a_stream_past_the_advertised_size_or_the_cap_is_cut_off_and_nothing_is_kept(tmp_path, advertised, cap,
                                                                                    reason):
    cache = BundleCache(tmp_path, max_bundle_bytes=cap)
    sent: list[int] = []
    with pytest.raises(BundleError, match=re.escape(reason)):
        cache.get("ab" * 32, lambda h, download: _endless(download, sent), advertised_bytes=advertised)
    assert len(sent) <= cap // 65536 + 1, "the stream stops at the first chunk past the limit"
    assert list((tmp_path / "bundles").iterdir()) == [], "no partial download stays behind"


def test_a_bundle_advertised_over_the_cap_is_not_fetched_at_all(tmp_path):
    cache = BundleCache(tmp_path, max_bundle_bytes=1_000)
    with pytest.raises(BundleError, match="advertised at 5000 bytes, over the 1000-byte bundle cap"):
        cache.get("ab" * 32, lambda h, download: pytest.fail("fetched"), advertised_bytes=5_000)


def test_a_broken_stream_starts_over_and_the_retry_alone_counts(tmp_path):
    b = bundle("a")
    cache = BundleCache(tmp_path, max_bundle_bytes=len(b.data) + 10)

    def flaky(bundle_hash: str, download: BundleDownload) -> None:
        download.restart()
        download.write(b.data[:100])  # the first attempt broke here
        download.restart()
        download.write(b.data)

    assert (cache.get(b.hash, flaky, advertised_bytes=len(b.data)).files / "study.toml").read_bytes() == b"a"


def test_the_least_recently_used_bundle_is_evicted_past_the_cap(tmp_path):
    old, used, new = bundle("old"), bundle("used"), bundle("new")
    server = Server(old, used, new)
    cache = BundleCache(tmp_path, max_bytes=25_000)  # room for two
    cache.get(old.hash, server.fetch)
    time.sleep(0.01)
    cache.get(used.hash, server.fetch)
    time.sleep(0.01)
    cache.get(old.hash, server.fetch)               # now `used` is the least recently used
    time.sleep(0.01)
    cache.get(new.hash, server.fetch)

    kept = sorted(p.name for p in (tmp_path / "bundles").iterdir() if not p.name.startswith("."))
    assert kept == sorted([old.hash, new.hash])
    assert cache.get(used.hash, server.fetch).cache_hit is False, "an evicted bundle is fetched again"


def test_a_bundle_larger_than_the_cap_is_still_kept_while_in_use(tmp_path):
    big = bundle("big", size=50_000)
    cache = BundleCache(tmp_path, max_bytes=1_000)
    assert (cache.get(big.hash, Server(big).fetch).files / "data.bin").stat().st_size == 50_000


def test_setup_runs_once_and_a_failure_is_remembered_not_retried(tmp_path):
    good, bad = bundle("good"), bundle("bad")
    server = Server(good, bad)
    cache = BundleCache(tmp_path)
    runs: list[Path] = []

    def succeed(files: Path) -> tuple[bool, str]:
        runs.append(files)
        return True, "prepared"

    def fail(files: Path) -> tuple[bool, str]:
        runs.append(files)
        return False, "download refused"

    entry = cache.get(good.hash, server.fetch)
    assert cache.setup_once(entry, succeed)[:2] == (True, "prepared")
    assert cache.setup_once(entry, fail) == (True, "", 0.0)
    broken = cache.get(bad.hash, server.fetch)
    assert cache.setup_once(broken, fail)[:2] == (False, "download refused")
    assert cache.setup_once(broken, succeed) == (False, "download refused", 0.0)
    assert len(runs) == 2
    # ...until the retry delay has passed.
    assert cache.setup_once(broken, succeed, retry_after_seconds=0)[:2] == (True, "prepared")


def test_a_fifo_a_setup_left_in_the_bundle_is_not_copied_and_links_stay_links(tmp_path):
    b = bundle("a")
    cache = BundleCache(tmp_path)
    entry = cache.get(b.hash, Server(b).fetch)
    os.mkfifo(entry.files / "pipe")
    os.symlink("data.bin", entry.files / "alias.bin")
    cache.copy_to(entry, tmp_path / "scratch")
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["alias.bin", "data.bin", "study.toml"]
    assert (tmp_path / "scratch" / "alias.bin").is_symlink()


def test_a_cancelled_setup_is_not_remembered(tmp_path):
    b = bundle("a")
    cache = BundleCache(tmp_path)
    entry = cache.get(b.hash, Server(b).fetch)
    assert cache.setup_once(entry, lambda files: (None, "cancelled"))[:2] == (False, "cancelled")
    assert cache.setup_once(entry, lambda files: (True, "done"))[:2] == (True, "done")


def test_outbox_keeps_entries_across_instances_oldest_first(tmp_path):
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(OutboxEntry("l-2", b"second", created=2.0))
    outbox.put(OutboxEntry("l-1", b"first", created=1.0))
    (tmp_path / "outbox" / "l-bad.msgpack").write_bytes(b"\xc1 not msgpack")

    reopened = Outbox(tmp_path / "outbox")  # as after a worker restart
    assert [e.request for e in reopened.pending()] == [b"first", b"second"]
    assert (tmp_path / "outbox" / "l-bad.corrupt").exists(), "unreadable entries are set aside, not deleted"
    reopened.remove("l-1")
    assert len(reopened) == 1 and [e.lease_id for e in reopened.pending()] == ["l-2"]
