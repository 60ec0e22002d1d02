"""Requests the coordinator refuses, each naming the gRPC status the servicer sends for it."""

from __future__ import annotations


class CoordinatorError(Exception):
    """A request the coordinator refuses; `code` names the gRPC status the servicer sends."""

    code = "INTERNAL"


class NotFound(CoordinatorError):
    code = "NOT_FOUND"


class InvalidRequest(CoordinatorError):
    code = "INVALID_ARGUMENT"


class WrongState(CoordinatorError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(CoordinatorError):
    code = "ALREADY_EXISTS"


class NotYours(CoordinatorError):
    code = "PERMISSION_DENIED"
