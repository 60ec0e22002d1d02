"""Authentication: who may call what on the coordinator.

Three kinds of bearer token, all stored as sha256 hashes (a leaked database leaks no token):

- the **admin** token, created on first start and shown once: control RPCs (add a study,
  status, history, tokens);
- **join** tokens (`autoswarm token create --name alice`): a volunteer registers with one; its
  name is the worker's *owner*, the identity the verification quorum counts as distinct;
- **worker** credentials, issued at registration: every worker RPC carries one, and it only
  speaks for the worker it was issued to.

A server interceptor refuses missing or wrong tokens before any servicer runs; revoking a
join token revokes the credentials issued with it, effective at the next call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import grpc

from autoswarm.coordinator.store import Store, TokenRecord

WORKER_METHODS = frozenset({"Lease", "Heartbeat", "Report", "Release", "FetchBundle"})
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
TOKEN_PREFIX = {"admin": "asa_", "join": "asj_", "worker": "asw_"}


class AuthError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: str) -> str:
    return TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, once its token checked out."""

    kind: str                 # admin, join, worker, or "anonymous" when auth is off
    owner: str = ""           # the join token's name (for join tokens and the workers they made)
    worker_id: str = ""       # for worker credentials


ANONYMOUS = Caller("anonymous")


class Authenticator:
    """Checks bearer tokens against the store; keeps an in-memory index so checks are cheap."""

    def __init__(self, store: Store, enabled: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.enabled = enabled
        self._clock = clock
        self._by_hash: dict[str, TokenRecord] = {t.hash: t for t in store.tokens()}

    def ensure_admin(self) -> str | None:
        """Creates the admin token on first start; returns it (shown once) or None if one exists."""
        if any(t.kind == "admin" and not t.revoked for t in self._by_hash.values()):
            return None
        token = new_token("admin")
        self._add(TokenRecord(token_hash(token), "admin", "admin", "", "", self._clock(), False))
        return token

    def _add(self, record: TokenRecord) -> None:
        self.store.add_token(record)
        self._by_hash[record.hash] = record

    def create_join_token(self, name: str) -> str:
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise ValueError("a token name is 1-64 letters, digits, '-', '_', '.' or '@'")
        if any(t.kind == "join" and t.name == name and not t.revoked for t in self._by_hash.values()):
            raise ValueError(f"a join token named {name!r} exists already; revoke it first or pick another name")
        token = new_token("join")
        self._add(TokenRecord(token_hash(token), "join", name, "", "", self._clock(), False))
        return token

    def issue_worker_credential(self, join: Caller, worker_id: str) -> str:
        token = new_token("worker")
        parent = next((t.hash for t in self._by_hash.values() if t.kind == "join" and t.name == join.owner
                       and not t.revoked), "")
        self._add(TokenRecord(token_hash(token), "worker", join.owner, worker_id, parent, self._clock(), False))
        return token

    def revoke(self, name: str) -> int:
        """Revokes a join token and every worker credential issued with it; returns how many."""
        doomed = [t for t in self._by_hash.values() if t.name == name and t.kind in ("join", "worker") and not t.revoked]
        for t in doomed:
            self._by_hash[t.hash] = replace(t, revoked=True)
        self.store.revoke_tokens([t.hash for t in doomed])
        return len(doomed)

    def join_tokens(self) -> list[tuple[TokenRecord, int]]:
        """Join tokens with the number of workers registered with each."""
        workers: dict[str, int] = {}
        for t in self._by_hash.values():
            if t.kind == "worker" and not t.revoked:
                workers[t.name] = workers.get(t.name, 0) + 1
        return [(t, workers.get(t.name, 0)) for t in sorted(self._by_hash.values(), key=lambda t: t.created)
                if t.kind == "join"]

    def identify(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Caller:
        """The caller behind the request's bearer token; raises AuthError when there is none."""
        if not self.enabled:
            return ANONYMOUS
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "missing authorization: send 'Bearer <token>'")
        text = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "authorization must be 'Bearer <token>'")
        digest = token_hash(token.strip())
        record = self._by_hash.get(digest)
        # compare_digest keeps the check constant-time even though dict lookup already matched.
        if record is None or not hmac.compare_digest(record.hash, digest):
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if record.revoked:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "this token was revoked")
        return Caller(record.kind, record.name if record.kind != "admin" else "", record.worker_id)

    def authorize(self, method: str, metadata: tuple[tuple[str, str | bytes], ...] | None) -> Caller:
        """Checks that the caller may call `method` (a full gRPC method name)."""
        service, _, name = method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES or not self.enabled:
            return ANONYMOUS
        caller = self.identify(metadata)
        if service == "autoswarm.v1.WorkerService":
            wanted = "join" if name == "Register" else "worker"
            if caller.kind != wanted and not (name == "Register" and caller.kind == "worker"):
                raise AuthError(grpc.StatusCode.PERMISSION_DENIED,
                                f"{name} needs a {'join token' if wanted == 'join' else 'worker credential'}")
            return caller
        if caller.kind != "admin":
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"{name} needs the admin token")
        return caller


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the right token before any servicer runs."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        try:
            self.auth.authorize(handler_call_details.method, handler_call_details.invocation_metadata)
        except AuthError as exc:
            return _refusal(exc, await continuation(handler_call_details))
        return await continuation(handler_call_details)


def _refusal(error: AuthError, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as the real one that only aborts."""

    async def abort_unary(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(error.code, str(error))

    async def abort_stream(request: object, context: grpc.aio.ServicerContext):  # noqa: ANN202
        await context.abort(error.code, str(error))
        yield  # pragma: no cover - makes this an async generator

    deserializer = handler.request_deserializer if handler else None
    serializer = handler.response_serializer if handler else None
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(abort_unary, deserializer, serializer)


def caller_of(auth: Authenticator | None, context: grpc.aio.ServicerContext) -> Caller:
    """The caller of a request that the interceptor already let through."""
    if auth is None or not auth.enabled:
        return ANONYMOUS
    return auth.identify(context.invocation_metadata())
