"""Donation controls: parsing the volunteer's options, dividing the machine among slots,
deciding when the worker may start tasks, and the worker loop obeying that decision."""

from __future__ import annotations

import threading
from datetime import datetime, time
from pathlib import Path

import grpc
import pytest

from autoswarm.bundle import BundleError
from autoswarm.v1 import worker_pb2
from autoswarm.worker.donation import (
    IDLE,
    IDLE_PAUSED,
    OUT_OF_HOURS,
    RECONNECTING,
    STOPPING,
    WORKING,
    Availability,
    DonationError,
    DonationPolicy,
    FileLoad,
    Gate,
    SystemLoad,
    memory_per_slot,
    parse_gpus,
    parse_hours,
    parse_size,
    slot_cpu_sets,
    worker_state,
)
from autoswarm.worker.bundles import BundleDownload
from autoswarm.worker.hardware import GpuInfo, HardwareInfo, parse_compute_apps
from autoswarm.worker.loop import Worker, WorkerOptions, donated_hardware
from autoswarm.worker.sandbox import configure

# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("8G", 8 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("64k", 64 << 10), ("1000", 1000), ("2 gb", 2 << 30),
])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "8X", "-1G", "0", ""])
def test_parse_size_errors_name_the_option_and_the_fix(text):
    with pytest.raises(DonationError, match="--memory-limit: .*(write e.g. 8G|more than zero)"):
        parse_size(text)


def test_parse_gpus():
    assert parse_gpus("0,2") == (0, 2)
    assert parse_gpus("all") is None
    assert parse_gpus("none") == ()
    with pytest.raises(DonationError, match="--gpus: cannot read 'first'.*--gpus 0,2"):
        parse_gpus("first")
    with pytest.raises(DonationError, match="negative or repeated"):
        parse_gpus("1,1")


@pytest.mark.parametrize(("text", "inside", "outside"), [
    ("22-07", [time(22, 0), time(23, 59), time(0, 0), time(6, 59)], [time(7, 0), time(12, 0), time(21, 59)]),
    ("9:30-17", [time(9, 30), time(16, 59)], [time(9, 29), time(17, 0), time(3, 0)]),
    ("9-12,20-23", [time(10, 0), time(22, 0)], [time(13, 0), time(23, 0)]),
    ("0-24", [time(0, 0), time(23, 59)], []),
])
def test_hours_window(text, inside, outside):
    window = parse_hours(text)
    assert all(window.contains(t) for t in inside)
    assert not any(window.contains(t) for t in outside)


@pytest.mark.parametrize(("text", "message"), [
    ("22", "write START-END in local time"),
    ("25-07", "'25' in '25-07' is not a time of day"),
    ("9:75-10", "is not a time of day"),
    ("8-8", "starts and ends at the same time"),
])
def test_hours_errors(text, message):
    with pytest.raises(DonationError, match=message):
        parse_hours(text)


# -- dividing the machine ---------------------------------------------------------------------


def test_slot_cpu_sets():
    assert slot_cpu_sets(range(8), None, 2) == [(), ()]                   # no mask: everything
    assert slot_cpu_sets(range(8), 4, 2) == [(0, 1), (2, 3)]              # own share per slot
    assert slot_cpu_sets([3, 1, 2, 0], 3, 1) == [(0, 1, 2)]
    assert slot_cpu_sets(range(8), 1, 2) == [(0,), (0,)]                  # fewer CPUs than slots: shared
    with pytest.raises(DonationError, match="--max-cpus: must be at least 1"):
        slot_cpu_sets(range(8), 0, 1)


def test_memory_per_slot():
    assert memory_per_slot(16 << 30, None, 2) == 6 << 30                 # 3/4 of the RAM, split
    assert memory_per_slot(16 << 30, 4 << 30, 2) == 2 << 30
    assert memory_per_slot(0, None, 1) is None                            # unknown RAM: no default cap


def _machine(gpus: int = 2) -> HardwareInfo:
    return HardwareInfo(cpu_model="Test CPU", cpu_cores=8, memory_bytes=16 << 30,
                        gpus=tuple(GpuInfo(i, "Test GPU", 24 << 30, "550.1") for i in range(gpus)),
                        platform="Linux", python_version="3.11")


def test_donated_hardware_keeps_chosen_gpus_and_caps_cores(tmp_path):
    hw = donated_hardware(_machine(), WorkerOptions("x:1", tmp_path, gpus=(1,), max_cpus=2))
    assert [g.index for g in hw.gpus] == [1] and hw.cpu_cores == 2
    with pytest.raises(DonationError, match="--gpus: this machine has no GPU 3; its GPUs are 0, 1"):
        donated_hardware(_machine(), WorkerOptions("x:1", tmp_path, gpus=(0, 3)))
    assert donated_hardware(_machine(), WorkerOptions("x:1", tmp_path, gpus=())).gpus == ()


def test_parse_compute_apps():
    assert parse_compute_apps("1234\n5678\n") == (1234, 5678)
    assert parse_compute_apps("") == ()
    assert parse_compute_apps("No running processes found\n") == ()


# -- when may tasks start ---------------------------------------------------------------------


class FakeLoad:
    def __init__(self, cpu: float | None = 0.0, busy_gpus: tuple[int, ...] = ()) -> None:
        self.cpu, self.busy_gpus, self.asked_gpus = cpu, busy_gpus, []

    def other_cpu_fraction(self) -> float | None:
        return self.cpu

    def gpu_busy(self, index: int) -> bool:
        self.asked_gpus.append(index)
        return index in self.busy_gpus


def _at(hour: int, minute: int = 0):
    return lambda: datetime(2025, 1, 1, hour, minute)


def test_availability_hours_and_idle_only():
    load = FakeLoad(cpu=0.1)
    night = DonationPolicy(hours=parse_hours("22-07"))
    assert Availability(night, load, _at(23)).gate() == Gate(IDLE)
    closed = Availability(night, load, _at(12)).gate()
    assert closed.state == OUT_OF_HOURS and "22-07" in closed.reason and not closed.open

    idle_only = Availability(DonationPolicy(idle_only=True, busy_cpu_fraction=0.25), load, _at(12))
    assert idle_only.gate().open
    load.cpu = 0.6
    paused = idle_only.gate()
    assert paused.state == IDLE_PAUSED and paused.reason == "other programs use 60% of the CPUs (more than 25%)"
    load.cpu = None  # unknown (first sample): not a reason to pause
    assert idle_only.gate().open


def test_idle_only_asks_only_about_the_gpus_of_idle_slots():
    load = FakeLoad(busy_gpus=(1,))
    availability = Availability(DonationPolicy(idle_only=True), load)
    assert availability.gate(idle_gpus=[0]).open
    gate = availability.gate(idle_gpus=[0, 1])
    assert gate.state == IDLE_PAUSED and "GPU 1" in gate.reason
    assert load.asked_gpus == [0, 0, 1]


def test_without_controls_the_load_is_never_measured():
    class Exploding:
        def other_cpu_fraction(self):
            raise AssertionError("measured")

        def gpu_busy(self, index):
            raise AssertionError("measured")

    assert Availability(DonationPolicy(), Exploding()).gate([0]).open


def test_file_load_and_system_load(tmp_path):
    path = tmp_path / "load"
    assert FileLoad(path).other_cpu_fraction() == 0.0
    path.write_text("0.75\n")
    assert FileLoad(path).other_cpu_fraction() == 0.75
    system = SystemLoad()
    assert system.other_cpu_fraction() is None  # the first look only takes a sample
    sum(i * i for i in range(200_000))          # let some jiffies pass
    share = system.other_cpu_fraction()
    assert share is None or 0.0 <= share <= 1.0


def test_worker_state_word():
    paused = Gate(IDLE_PAUSED, "busy")
    assert worker_state(running=0, stopping=False, connected=True, gate=Gate(IDLE)) == IDLE
    assert worker_state(running=0, stopping=False, connected=True, gate=paused) == IDLE_PAUSED
    assert worker_state(running=1, stopping=False, connected=True, gate=paused) == WORKING
    assert worker_state(running=1, stopping=False, connected=False, gate=paused) == RECONNECTING
    assert worker_state(running=1, stopping=True, connected=False, gate=paused) == STOPPING


# -- the worker loop obeys --------------------------------------------------------------------


class FakeFuture:
    def __init__(self, respond) -> None:
        self._respond = respond

    def result(self, timeout: float | None = None):
        return self._respond()

    def cancel(self) -> None:
        pass


class FakeStub:
    """Answers a worker's calls in-process, recording releases and leases."""

    def __init__(self, on_lease) -> None:
        self.released: list[str] = []
        self.leases = 0
        self._on_lease = on_lease
        self.Lease = self
        self.Release = self._release

    def future(self, request, timeout: float):
        self.leases += 1
        return FakeFuture(self._on_lease)

    def _release(self, request, timeout: float):
        self.released.extend(request.lease_ids)
        return worker_pb2.ReleaseResponse(released=len(request.lease_ids))


def _worker(tmp_path: Path, load: FakeLoad | None = None, **options) -> Worker:
    worker = Worker(WorkerOptions("127.0.0.1:1", tmp_path / "state", slots=1, **options), _machine(gpus=0),
                    load=load, sandbox=configure("none"))
    worker.worker_id = "w-test"
    return worker


def _task(lease_id: str) -> worker_pb2.LeaseResponse:
    return worker_pb2.LeaseResponse(has_task=True, task=worker_pb2.Task(lease_id=lease_id))


def test_a_task_that_arrives_after_a_stop_request_is_released_not_run(tmp_path, monkeypatch):
    worker = _worker(tmp_path)

    def lease_while_stopping():
        worker.request_stop()  # the first Ctrl-C lands while the long-poll is out
        return _task("l-late")

    worker.connection.stub = FakeStub(lease_while_stopping)
    monkeypatch.setattr("autoswarm.worker.slot.prepare_task", lambda *a, **k: pytest.fail("unstarted work must not run"))
    worker._slot_loop(0, worker.slot_envs()[0])
    assert worker.connection.stub.released == ["l-late"]
    assert worker.state == STOPPING


def test_a_busy_machine_takes_no_task_and_hands_back_one_that_arrives(tmp_path, monkeypatch):
    load = FakeLoad(cpu=0.9)
    worker = _worker(tmp_path, load, donation=DonationPolicy(idle_only=True), check_interval=0.05)
    worker._check_availability()
    assert worker.state == IDLE_PAUSED

    def lease_then_busy():
        worker._gate = Gate(IDLE_PAUSED, "busy again")  # the machine got busy during the long-poll
        threading.Timer(0.3, worker.request_stop).start()
        return _task("l-busy")

    stub = FakeStub(lease_then_busy)
    worker.connection.stub = stub
    monkeypatch.setattr("autoswarm.worker.slot.prepare_task", lambda *a, **k: pytest.fail("must not run while busy"))
    paused = threading.Thread(target=worker._slot_loop, args=(0, worker.slot_envs()[0]))
    paused.start()
    paused.join(0.5)
    assert stub.leases == 0, "no lease is asked for while the machine is busy"

    load.cpu = 0.0
    worker._check_availability()
    paused.join(30)
    assert not paused.is_alive()
    assert stub.leases == 1 and stub.released == ["l-busy"]


def test_immediate_stop_releases_running_leases(tmp_path):
    worker = _worker(tmp_path)
    stub = FakeStub(lambda: None)
    worker.connection.stub = stub
    cancel = threading.Event()
    worker._running["l-running"] = cancel
    worker.request_stop(immediate=True)
    assert cancel.is_set() and stub.released == ["l-running"]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "fake"


def test_a_coordinator_outage_during_the_bundle_fetch_is_waited_out(tmp_path):
    worker = _worker(tmp_path)
    attempts = []

    def fetch(bundle_hash: str):
        attempts.append(bundle_hash)
        yield b"first chunk"
        if len(attempts) == 1:
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)  # the stream broke mid-way
        yield b"second chunk"

    worker.connection.fetch_bundle = fetch
    download = BundleDownload(tmp_path / "bundle", 1000, "the advertised size")
    worker._fetch_bundle("ab12", download)
    download.close()
    assert (tmp_path / "bundle").read_bytes() == b"first chunksecond chunk", "the retry starts over"
    assert len(attempts) == 2

    def refuse(bundle_hash: str):
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND)
        yield b""

    worker.connection.fetch_bundle = refuse
    with pytest.raises(BundleError, match="the coordinator refused bundle ab12: NOT_FOUND"):
        worker._fetch_bundle("ab12", BundleDownload(tmp_path / "again", 1000, "the advertised size"))
