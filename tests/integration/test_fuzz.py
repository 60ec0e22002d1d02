"""Fuzzing every RPC of a live coordinator with generated malformed and extreme messages.

Whatever arrives, the coordinator must answer with a deliberate status code (never UNKNOWN or
INTERNAL, which mean an unhandled exception), stay up, and keep its database consistent.
"""

from __future__ import annotations

import math
import sqlite3

import grpc
import msgpack
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoswarm.v1 import control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc
from swarm import write_study

pytestmark = pytest.mark.integration

CRASH_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
EXTREME_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324])
TEXT = st.one_of(st.text(max_size=40), st.text(min_size=1000, max_size=5000), st.sampled_from(["", "..", "/", "\x00"]))


def message_strategy(descriptor, known: dict[str, list[str]], depth: int = 0) -> st.SearchStrategy[dict]:
    """Field values for a message type: random, extreme, or ids the coordinator knows."""
    fields = {}
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.message_type.GetOptions().map_entry:
                value = st.dictionaries(st.text(max_size=70), st.one_of(st.floats(allow_nan=True), st.text(max_size=20)),
                                        max_size=80)
            elif depth >= 2:
                continue
            else:
                value = message_strategy(f.message_type, known, depth + 1)
        elif f.type == FieldDescriptor.TYPE_STRING:
            ids = known.get(f.name, [])
            value = st.one_of(TEXT, st.sampled_from(ids)) if ids else TEXT
        elif f.type == FieldDescriptor.TYPE_BYTES:
            value = st.one_of(st.binary(max_size=200), st.binary(min_size=70_000, max_size=120_000))
        elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), EXTREME_FLOATS)
        elif f.type == FieldDescriptor.TYPE_BOOL:
            value = st.booleans()
        elif f.type == FieldDescriptor.TYPE_ENUM:
            value = st.integers(-5, 40)
        elif f.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
            value = st.integers(-(2**63), 2**63 - 1)
        else:
            value = st.integers(-(2**31), 2**31 - 1)
        if f.is_repeated and not (
                f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry):
            value = st.lists(value, max_size=5)
        fields[f.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[Message], values: dict) -> Message:
    message = cls()
    for name, value in values.items():
        field = cls.DESCRIPTOR.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            target = getattr(message, name)
            value_type = field.message_type.fields_by_name["value"].type
            for k, v in value.items():
                if (value_type == FieldDescriptor.TYPE_DOUBLE) == isinstance(v, float):
                    target[k] = v
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub_cls = type(getattr(cls(), name)) if not field.is_repeated else None
            if sub_cls is None:
                item_cls = type(getattr(cls(), name).add())
                getattr(message, name).extend(build(item_cls, v) for v in value)
            else:
                getattr(message, name).CopyFrom(build(sub_cls, value))
        elif field.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    from swarm import CoordinatorProcess

    tmp = tmp_path_factory.mktemp("fuzz")
    coordinator = CoordinatorProcess(db=tmp / "swarm.db", log=tmp / "coordinator.log",
                                     args=("--worker-rate", "0", "--max-message-bytes", "1048576")).start()
    channel = grpc.insecure_channel(coordinator.address, options=[("grpc.max_send_message_length", 4 << 20)])
    workers, control = worker_pb2_grpc.WorkerServiceStub(channel), control_pb2_grpc.ControlServiceStub(channel)
    with coordinator.control() as client:
        client.add_study(write_study(tmp / "study"))
    worker_id = workers.Register(worker_pb2.RegisterRequest(name="fuzzer", slots=4, mutators=["params"]),
                                 timeout=10).worker_id
    lease = workers.Lease(worker_pb2.LeaseRequest(worker_id=worker_id, wait_seconds=5), timeout=10).task
    known = {"worker_id": [worker_id], "lease_id": [lease.lease_id], "lease_ids": [lease.lease_id],
             "study": ["tiny"], "bundle_hash": [lease.bundle_hash], "hash": [lease.candidate.hash]}
    yield coordinator, workers, control, known
    channel.close()
    coordinator.kill()


def _call(method, request) -> None:
    try:
        response = method(request, timeout=10)
        if hasattr(response, "__iter__") and not isinstance(response, Message):
            for _ in response:  # drain a stream
                pass
    except grpc.RpcError as exc:
        assert exc.code() not in CRASH_CODES, f"{exc.code().name}: {exc.details()}"


RPCS = [
    ("WorkerService", "Register", worker_pb2.RegisterRequest),
    ("WorkerService", "Lease", worker_pb2.LeaseRequest),
    ("WorkerService", "Heartbeat", worker_pb2.HeartbeatRequest),
    ("WorkerService", "Report", worker_pb2.ReportRequest),
    ("WorkerService", "Release", worker_pb2.ReleaseRequest),
    ("WorkerService", "FetchBundle", worker_pb2.FetchBundleRequest),
    ("ControlService", "AddStudy", control_pb2.AddStudyRequest),
    ("ControlService", "Status", control_pb2.StatusRequest),
    ("ControlService", "History", control_pb2.HistoryRequest),
    ("ControlService", "GetVersion", control_pb2.GetVersionRequest),
    ("ControlService", "Lineage", control_pb2.HistoryRequest),
]


@pytest.mark.parametrize("service, method, request_cls", RPCS, ids=[m for _, m, _ in RPCS])
def test_every_rpc_answers_garbage_with_a_status_code(target, service, method, request_cls):
    coordinator, workers, control, known = target
    stub = workers if service == "WorkerService" else control
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(values=message_strategy(request_cls.DESCRIPTOR, known))
    def fuzz(values: dict) -> None:
        request = build(request_cls, values)
        if method == "Lease":  # a long-poll: keep waits short so the fuzzer does not sit in them
            request.wait_seconds = min(abs(request.wait_seconds), 0.05) if math.isfinite(request.wait_seconds) else 0
        _call(getattr(stub, method), request)

    fuzz()
    assert coordinator.proc.poll() is None, "the coordinator is still up"


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(files=st.lists(st.tuples(st.one_of(st.text(max_size=30), st.sampled_from(["study.toml", "train.py", "../x"])),
                                st.binary(max_size=300)), max_size=4),
       toml=st.text(max_size=300))
def test_add_study_with_structured_garbage_bundles(target, files, toml):
    coordinator, _, control, _ = target
    entries = [[path, data] for path, data in files] + [["study.toml", toml.encode()]]
    bundle = msgpack.packb({"format": 1, "files": entries}, use_bin_type=True)
    _call(control.AddStudy, control_pb2.AddStudyRequest(bundle=bundle))


def test_state_is_consistent_after_the_fuzzing(target):
    coordinator, workers, _, known = target
    with sqlite3.connect(f"file:{coordinator.db}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        orphans = db.execute("SELECT COUNT(*) FROM results r LEFT JOIN leases l ON l.id = r.id "
                             "WHERE l.state IS NOT 'reported'").fetchone()[0]
        assert orphans == 0, "every result closes exactly its own lease"
        seqs = [s for (s,) in db.execute("SELECT seq FROM champions WHERE study='tiny' ORDER BY seq")]
        assert seqs == list(range(len(seqs)))
        unknown = db.execute("SELECT COUNT(*) FROM leases WHERE worker_id NOT IN (SELECT id FROM workers)").fetchone()[0]
        assert unknown == 0
        non_finite = db.execute("SELECT COUNT(*) FROM results WHERE metric IS NOT NULL AND "
                                "(metric != metric OR abs(metric) > 1e308)").fetchone()[0]
        assert non_finite == 0, "no NaN or infinite metric was stored"
    # The coordinator still serves its real worker normally.
    registered = workers.Register(worker_pb2.RegisterRequest(worker_id=known["worker_id"][0], name="fuzzer", slots=4,
                                                             mutators=["params"]), timeout=10)
    assert registered.worker_id == known["worker_id"][0]
