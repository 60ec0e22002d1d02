"""A small client for the coordinator's control service, used by the CLI and `run`."""

from __future__ import annotations

from pathlib import Path

import grpc

from autoswarm.bundle import pack_directory
from autoswarm.study import load_study
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc

MAX_MESSAGE_BYTES = 80 << 20


class ControlError(RuntimeError):
    """The coordinator refused or could not be reached; the message says which and why."""


class ControlClient:
    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        self.stub = control_pb2_grpc.ControlServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ControlError(f"cannot reach a coordinator at {self.address}: is it running? ({exc.details()})") from None
            raise ControlError(f"{exc.code().name}: {exc.details()}") from None

    def add_study(self, study_dir: Path, max_evaluations: int = 0) -> control_pb2.AddStudyResponse:
        """Validates the study locally (clear errors before any upload), packs and adds it."""
        study = load_study(study_dir)
        bundle = pack_directory(study_dir, study.exclude)
        return self._call(self.stub.AddStudy, control_pb2.AddStudyRequest(
            bundle=bundle.data, max_evaluations=max_evaluations))

    def status(self) -> control_pb2.StatusResponse:
        return self._call(self.stub.Status, control_pb2.StatusRequest())

    def history(self, study: str) -> control_pb2.HistoryResponse:
        return self._call(self.stub.History, control_pb2.HistoryRequest(study=study))

    def lineage(self, study: str) -> control_pb2.LineageResponse:
        return self._call(self.stub.Lineage, control_pb2.HistoryRequest(study=study))

    def version(self, study: str, version_hash: str = "") -> common_pb2.Version:
        return self._call(self.stub.GetVersion, control_pb2.GetVersionRequest(study=study, hash=version_hash))
