"""Authentication: who may call what on the coordinator.

Four kinds of bearer token, all stored as sha256 hashes (a leaked database leaks no token):

- the **admin** token, created on first start and shown once: control RPCs (add a study,
  status, history, tokens);
- **join** tokens (`autoswarm token create --name alice [--team T]`): a volunteer registers
  with one; its name is the worker's *owner*, the identity the verification quorum counts as
  distinct, and the name (or display name, or a pseudonym) on the leaderboard;
- **worker** credentials, issued at registration: every worker RPC carries one, and it only
  speaks for the worker it was issued to;
- **reader** tokens (`autoswarm token create --reader --name grafana`): read-only — the web
  page and its JSON API when the admin requires a token, and the `status`, `history`,
  `lineage` and `credit` RPCs.

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
TOKEN_PREFIX = {"admin": "asa_", "join": "asj_", "worker": "asw_", "reader": "asr_"}
READER_METHODS = frozenset({"Status", "History", "Lineage", "Credit"})   # ControlService, read-only
MAX_TEAM_CHARS = 64


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

    def create_join_token(self, name: str, team: str = "", display: str = "", anonymous: bool = False,
                          kind: str = "join") -> str:
        """A new join token (or, with kind="reader", a read-only token); returns it (shown once).

        `team` and `display` are what the leaderboard shows; `anonymous` shows a pseudonym instead
        of the owner's name on public pages.
        """
        if kind not in ("join", "reader"):
            raise ValueError(f"cannot create a {kind} token here")
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise ValueError("a token name is 1-64 letters, digits, '-', '_', '.' or '@'")
        for label, value in (("team", team), ("display name", display)):
            if len(value) > MAX_TEAM_CHARS or not all(c.isprintable() for c in value) or value != value.strip():
                raise ValueError(f"a {label} is at most {MAX_TEAM_CHARS} printable characters, "
                                 "with no leading or trailing space")
        if kind == "reader" and (team or display or anonymous):
            raise ValueError("a reader token has no team or display name: it belongs to no volunteer")
        if any(t.kind == kind and t.name == name and not t.revoked for t in self._by_hash.values()):
            raise ValueError(f"a {kind} token named {name!r} exists already; revoke it first or pick another name")
        token = new_token(kind)
        self._add(TokenRecord(token_hash(token), kind, name, "", "", self._clock(), False, team, display, anonymous))
        return token

    def reader(self, token: str) -> bool:
        """Whether `token` may read the web page and its API (a live reader or admin token)."""
        record = self._by_hash.get(token_hash(token.strip()))
        return record is not None and not record.revoked and record.kind in ("reader", "admin")

    def issue_worker_credential(self, join: Caller, worker_id: str) -> str:
        token = new_token("worker")
        parent = next((t.hash for t in self._by_hash.values() if t.kind == "join" and t.name == join.owner
                       and not t.revoked), "")
        self._add(TokenRecord(token_hash(token), "worker", join.owner, worker_id, parent, self._clock(), False))
        return token

    def revoke(self, name: str) -> int:
        """Revokes a join token and every worker credential issued with it; returns how many."""
        doomed = [t for t in self._by_hash.values()
                  if t.name == name and t.kind in ("join", "worker", "reader") and not t.revoked]
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
                if t.kind in ("join", "reader")]

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
        if caller.kind == "reader" and service == "autoswarm.v1.ControlService" and name in READER_METHODS:
            return caller
        if caller.kind != "admin":
            also = " or a reader token" if name in READER_METHODS else ""
            raise AuthError(grpc.StatusCode.PERMISSION_DENIED, f"{name} needs the admin token{also}")
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


@dataclass(frozen=True)
class Profile:
    """How an owner appears on public pages."""

    public: str          # the display name, the token's name, or a pseudonym
    team: str
    anonymous: bool


def pseudonym(owner: str) -> str:
    """A stable public name that does not reveal `owner`."""
    return "anonymous-" + hashlib.sha256(("autoswarm-owner:" + owner).encode()).hexdigest()[:8]


def profiles(tokens: list[TokenRecord]) -> dict[str, Profile]:
    """Owner name -> its public profile, from the join tokens (the newest one of a name wins)."""
    out: dict[str, Profile] = {}
    for t in sorted(tokens, key=lambda t: (t.revoked is False, t.created)):
        if t.kind == "join":
            out[t.name] = Profile(pseudonym(t.name) if t.anonymous else (t.display or t.name), t.team, t.anonymous)
    return out
