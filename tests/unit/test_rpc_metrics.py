"""The RPC interceptor keeps each method's wrapped handler, and still times whatever runs."""

from __future__ import annotations

import asyncio

import grpc

from autoswarm.coordinator.metrics import CoordinatorMetrics

LEASE = "/autoswarm.v1.WorkerService/Lease"


class _Context:
    """What the interceptor reads of a servicer context: the code a handler set, if any."""

    def __init__(self) -> None:
        self.status: grpc.StatusCode | None = None

    def code(self) -> grpc.StatusCode | None:
        return self.status


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _count(metrics: CoordinatorMetrics, code: str) -> float:
    return sum(s.value for family in metrics.registry.collect() for s in family.samples
               if s.name == "autoswarm_rpc_duration_seconds_count"
               and s.labels.get("grpc_method") == "Lease" and s.labels.get("grpc_code") == code)


def test_a_refusal_between_two_calls_is_timed_as_a_refusal_and_the_real_handler_runs_again():
    """The auth interceptor hands over a refusal of the same shape for a call without the right
    token: a handler kept per method must not serve the next caller that refusal, nor the real
    one to a refused caller."""
    metrics = CoordinatorMetrics(process_metrics=False)
    interceptor = metrics.interceptor()
    ran: list[str] = []

    async def real(request: object, context: _Context) -> str:
        ran.append("real")
        return "task"

    async def refusal(request: object, context: _Context) -> None:
        ran.append("refused")
        context.status = grpc.StatusCode.PERMISSION_DENIED
        raise RuntimeError("aborted")       # as context.abort() raises

    handlers = {"real": grpc.unary_unary_rpc_method_handler(real),
                "refused": grpc.unary_unary_rpc_method_handler(refusal)}

    async def calls() -> list[object]:
        answers = []
        for which in ("real", "refused", "real", "real"):
            async def continuation(details: object, which: str = which) -> grpc.RpcMethodHandler:
                return handlers[which]
            handler = await interceptor.intercept_service(continuation, _Details(LEASE))
            try:
                answers.append(await handler.unary_unary(None, _Context()))
            except RuntimeError:
                answers.append("refused")
        return answers

    assert asyncio.run(calls()) == ["task", "refused", "task", "task"]
    assert ran == ["real", "refused", "real", "real"]
    assert _count(metrics, "OK") == 3 and _count(metrics, "PERMISSION_DENIED") == 1


def test_an_unknown_method_is_neither_timed_nor_kept():
    metrics = CoordinatorMetrics(process_metrics=False)
    interceptor = metrics.interceptor()

    async def nothing(details: object) -> None:
        return None

    async def call() -> object:
        return await interceptor.intercept_service(nothing, _Details("/attacker/Chosen"))

    assert asyncio.run(call()) is None
    names = {s.labels.get("grpc_method") for family in metrics.registry.collect() for s in family.samples
             if s.name == "autoswarm_rpc_duration_seconds_count"}
    assert "Chosen" not in names
