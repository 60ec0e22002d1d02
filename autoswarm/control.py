"""A small client for the coordinator's control service, used by the CLI and `run`."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from autoswarm.bundle import pack_directory
from autoswarm.channel import open_channel
from autoswarm.study import load_study
from autoswarm.v1 import common_pb2, control_pb2, control_pb2_grpc


def _bundle(study_dir: Path) -> bytes:
    """The study validated here (clear errors before any upload), packed."""
    study = load_study(study_dir)
    return pack_directory(study_dir, study.exclude).data


class ControlError(RuntimeError):
    """The coordinator refused or could not be reached; the message says which and why."""


class ControlClient:
    """Talks to a coordinator's ControlService with the admin token.

    The token defaults to $AUTOSWARM_TOKEN and the CA certificate to $AUTOSWARM_CA.
    """

    def __init__(self, address: str, timeout: float = 30.0, token: str | None = None, ca: Path | None = None) -> None:
        self.address = address
        self.timeout = timeout
        token = token if token is not None else os.environ.get("AUTOSWARM_TOKEN", "")
        ca = ca if ca is not None else (Path(os.environ["AUTOSWARM_CA"]) if os.environ.get("AUTOSWARM_CA") else None)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.channel = open_channel(address, ca)
        self.stub = control_pb2_grpc.ControlServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ControlError(f"cannot reach a coordinator at {self.address}: is it running? ({exc.details()})") from None
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise ControlError(f"{exc.code().name}: {exc.details()} — pass the admin token with --token "
                                   "or AUTOSWARM_TOKEN") from None
            raise ControlError(f"{exc.code().name}: {exc.details()}") from None

    def add_study(self, study_dir: Path, max_evaluations: int = 0, priority: int = 0) -> control_pb2.AddStudyResponse:
        """Validates the study locally (clear errors before any upload), packs and adds it."""
        return self._call(self.stub.AddStudy, control_pb2.AddStudyRequest(
            bundle=_bundle(study_dir), max_evaluations=max_evaluations, priority=priority))

    def update_study(self, study_dir: Path) -> control_pb2.AddStudyResponse:
        """Replaces a study's bundle (program, data, mutator settings), keeping champion and history."""
        return self._call(self.stub.UpdateStudy, control_pb2.AddStudyRequest(bundle=_bundle(study_dir)))

    def change_study(self, study: str, action: str = "", priority: int = 0,
                     max_evaluations: int | None = None) -> control_pb2.ChangeStudyResponse:
        """Pause, resume or remove a study, or set its priority or budget."""
        return self._call(self.stub.ChangeStudy, control_pb2.ChangeStudyRequest(
            study=study, action=action, priority=priority, set_max_evaluations=max_evaluations is not None,
            max_evaluations=max_evaluations or 0))

    def result(self, result_id: str) -> control_pb2.ResultDetail:
        return self._call(self.stub.GetResult, control_pb2.GetResultRequest(result_id=result_id))

    def status(self, workers: int | None = None, offset: int = 0) -> control_pb2.StatusResponse:
        """Studies, every worker counted by state and class, and `workers` worker rows from the
        `offset`-th (None: every worker's row, as before pages; 0: counts only). A coordinator
        lists a bounded page a call: the rest is asked for again until `workers` rows came."""
        if workers is None:
            return self._call(self.stub.Status, control_pb2.StatusRequest())

        def page(start: int, limit: int) -> control_pb2.StatusResponse:
            return self._call(self.stub.Status, control_pb2.StatusRequest(
                workers=control_pb2.WorkerPage(offset=start, limit=limit)))
        response = page(offset, workers)
        while response.workers_total and len(response.workers) < min(workers, response.workers_total - offset):
            more = page(offset + len(response.workers), workers - len(response.workers))
            if not more.workers:
                break
            response.workers.extend(more.workers)
        return response

    def history(self, study: str) -> control_pb2.HistoryResponse:
        return self._call(self.stub.History, control_pb2.HistoryRequest(study=study))

    def create_token(self, name: str, *, team: str = "", display_name: str = "", anonymous: bool = False,
                     reader: bool = False) -> control_pb2.CreateTokenResponse:
        return self._call(self.stub.CreateToken, control_pb2.CreateTokenRequest(
            name=name, team=team, display_name=display_name, anonymous=anonymous, reader=reader))

    def credit(self) -> control_pb2.CreditResponse:
        return self._call(self.stub.Credit, control_pb2.CreditRequest())

    def list_tokens(self) -> control_pb2.ListTokensResponse:
        return self._call(self.stub.ListTokens, control_pb2.ListTokensRequest())

    def revoke_token(self, name: str) -> control_pb2.RevokeTokenResponse:
        return self._call(self.stub.RevokeToken, control_pb2.RevokeTokenRequest(name=name))

    def lineage(self, study: str) -> control_pb2.LineageResponse:
        return self._call(self.stub.Lineage, control_pb2.HistoryRequest(study=study))

    def version(self, study: str, version_hash: str = "") -> common_pb2.Version:
        return self._call(self.stub.GetVersion, control_pb2.GetVersionRequest(study=study, hash=version_hash))
