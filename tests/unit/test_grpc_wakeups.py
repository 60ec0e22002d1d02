"""grpc.aio's wake-up bytes are drained each turn, and no completion is left behind (wakeups.py)."""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from autoswarm.coordinator.wakeups import (
    bytes_to_skip, drain_grpc_wakeups, drained_reader, waiting_bytes, wakeup_write_end,
)


class _Poller:
    """grpc.aio's poller and reader in miniature: a completion is queued, then a byte written;
    the reader reads one byte and takes every completion queued (cygrpc.PollerCompletionQueue)."""

    __slots__ = ("read_socket", "write_socket", "queue", "taken")   # held as grpc's poller holds them

    def __init__(self) -> None:
        self.read_socket, self.write_socket = socket.socketpair()
        self.read_socket.setblocking(False)
        self.queue: collections.deque[int] = collections.deque()
        self.taken: list[int] = []

    def complete(self, n: int) -> None:
        for i in range(n):
            self.queue.append(i)
            try:
                os.write(self.write_socket.fileno(), b"1")   # grpc ignores what write returns
            except BlockingIOError:
                pass

    def reader(self) -> None:
        self.read_socket.recv(1)       # raises on an empty socket, as grpc's does
        while self.queue:
            self.taken.append(self.queue.popleft())

    def close(self) -> None:
        self.read_socket.close()
        self.write_socket.close()


def test_all_but_the_last_byte_is_skipped():
    assert [bytes_to_skip(n) for n in (0, 1, 2, 200)] == [0, 0, 1, 199]


def test_grpcs_own_reader_leaves_a_byte_per_completion_but_one_and_the_drained_one_leaves_none():
    """Why the poller thread blocked: one turn takes every completion but only one byte, so the
    rest stay in the socket (a few hundred fill it); drained, the socket is empty after a turn."""
    plain, drained = _Poller(), _Poller()
    try:
        plain.complete(50)
        plain.reader()
        assert len(plain.taken) == 50 and waiting_bytes(plain.read_socket.fileno()) == 49

        drained.complete(50)
        drained_reader(drained.read_socket.fileno(), drained.reader)()
        assert len(drained.taken) == 50 and waiting_bytes(drained.read_socket.fileno()) == 0
    finally:
        plain.close()
        drained.close()


def test_a_completion_queued_after_a_turn_comes_with_a_byte_that_wakes_the_next():
    poller = _Poller()
    try:
        turn = drained_reader(poller.read_socket.fileno(), poller.reader)
        poller.complete(3)
        turn()
        poller.complete(1)
        assert waiting_bytes(poller.read_socket.fileno()) == 1   # the loop is woken again
        turn()
        assert poller.taken == [0, 1, 2, 0] and waiting_bytes(poller.read_socket.fileno()) == 0
        turn()      # woken with nothing waiting: grpc's reader is not run on an empty socket
        assert poller.taken == [0, 1, 2, 0]
    finally:
        poller.close()


def _blocking(sock: socket.socket) -> bool:
    return not fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK


def test_a_real_grpc_aio_server_is_wrapped_once_and_answers_a_burst_of_calls():
    """The reader grpc.aio registers is found and wrapped (once: a second call finds only the
    wrapper), its socket's write end made non-blocking, and every call of a burst that queued
    while the loop was busy is answered."""
    blocking: list[bool] = []

    async def run() -> tuple[int, int, int, int]:
        loop = asyncio.get_running_loop()
        server = grpc.aio.server()
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        port = server.add_insecure_port("127.0.0.1:0")
        (read_fd, reader), = [(key.fd, key.data[0]._callback.func) for key in loop._selector.get_map().values()
                              if "_handle_events" in repr(key.data[0]._callback)]
        writer = wakeup_write_end(reader.__self__, read_fd)
        blocking.append(_blocking(writer))
        wrapped = drain_grpc_wakeups(loop)
        again = drain_grpc_wakeups(loop)
        blocking.append(_blocking(writer))
        await server.start()
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                calls = [stub.Check(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(400)]
                answers = await asyncio.gather(*calls)
        finally:
            await server.stop(0)
        serving = sum(a.status == health_pb2.HealthCheckResponse.SERVING for a in answers)
        return wrapped, again, serving, len(answers)

    wrapped, again, serving, total = asyncio.run(run())
    assert (wrapped, again) == (1, 0)
    assert blocking == [True, False], "grpc leaves the write end blocking; drained, it no longer is"
    assert serving == total == 400


def test_the_write_end_is_the_pollers_other_socket():
    poller = _Poller()
    try:
        assert wakeup_write_end(poller, poller.read_socket.fileno()) is poller.write_socket
        assert wakeup_write_end(object(), poller.read_socket.fileno()) is None, "none held: nothing to change"
    finally:
        poller.close()


def test_a_full_socket_drops_the_pollers_byte_instead_of_blocking_it_and_a_turn_takes_every_completion():
    """A loop turn of seconds: thousands of completions queue while nobody reads. With the write
    end non-blocking the poller never waits; the bytes past what the socket holds are dropped, and
    the next turn still takes every completion."""
    poller = _Poller()
    try:
        poller.write_socket.setblocking(False)
        poller.complete(5_000)        # blocking, this would hang at a few hundred
        waiting = waiting_bytes(poller.read_socket.fileno())
        assert 0 < waiting < 5_000, "the socket is full and the rest were dropped"
        drained_reader(poller.read_socket.fileno(), poller.reader)()
        assert poller.taken == list(range(5_000)) and waiting_bytes(poller.read_socket.fileno()) == 0
    finally:
        poller.close()

