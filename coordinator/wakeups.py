"""grpc.aio's completion wake-ups, drained each turn of the event loop instead of one a turn.

grpc.aio hands its completions (a call arrived, a message was read, a status was sent) to the
asyncio loop through a socket pair: its poller thread pushes each completion on a queue and
writes one byte, and the loop's reader for that socket reads **one** byte and then takes every
completion queued. So the loop empties the queue on every turn but reads only a byte a turn:
whenever completions come faster than the loop turns (4-5 per RPC: at 800 RPCs a second,
~4,000 a second, what a loop doing real work turns), the bytes pile up in the socket. A local
stream socket holds only ~270 one-byte writes (each is a buffer of its own), and then the
poller thread blocks in `write` until the loop reads another byte: from then on completions
reach the loop at most one per turn, and the calls behind them wait inside gRPC. Seen at
50,000 simulated workers (benchmarks/README.md, "Seventh session"): the poller threads of the
benchmark's client processes asleep in `sock_alloc_send_pskb` with 271-278 bytes waiting, and
169 waiting in the coordinator's. Draining removes that cap; a loop turn that lasts seconds
still fills the socket, and the poller then waits for the next turn.

`drain_grpc_wakeups(loop)` wraps that reader: it reads every byte waiting but one, then runs
grpc's own reader, which reads the last byte and takes every completion queued. No completion
is left behind: each byte is written after its completion was queued, so every byte read here
was written for a completion that grpc's reader then takes from the queue; a completion queued
after it comes with a byte of its own, and the loop is woken for it.

It also makes the socket's write end non-blocking, so that a loop turn of seconds no longer
stops the poller thread: once the socket is full, the poller's `write` fails (grpc ignores
what it returns) and that byte is dropped, which loses nothing, because bytes are waiting
already and the next turn's reader takes every completion queued, this one's too. grpc keeps
that end private: it is the one other local stream socket the poller object holds (found
among its references, `wakeup_write_end`); where there is not exactly one, it is left as is.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import gc
import logging
import os
import socket
import termios
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

GRPC_READER = "_handle_events"   # the name of grpc.aio's reader (cygrpc.PollerCompletionQueue)


def bytes_to_skip(waiting: int) -> int:
    """How many of the `waiting` wake-up bytes to read before grpc's reader reads the last one:
    all but one (grpc's reader reads exactly one, and fails on an empty socket)."""
    return max(waiting - 1, 0)


def waiting_bytes(fd: int) -> int:
    """Bytes waiting to be read on `fd` (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def drained_reader(fd: int, reader: Callable[[], Any]) -> Callable[[], None]:
    """`reader`, run after reading all but one of the bytes waiting on `fd`."""

    def drained() -> None:
        waiting = waiting_bytes(fd)
        if waiting == 0:
            return   # woken with nothing to read: grpc's reader would fail on the empty socket
        skip = bytes_to_skip(waiting)
        while skip > 0:
            skip -= len(os.read(fd, min(skip, 1 << 16)))
        reader()

    drained.__name__ = f"drained{GRPC_READER}"
    return drained


def wakeup_write_end(poller: object, read_fd: int) -> socket.socket | None:
    """The write end of `poller`'s wake-up socket pair: the one local stream socket it holds
    besides its read end `read_fd`, or None unless there is exactly one."""
    found = [ref for ref in gc.get_referents(poller)
             if isinstance(ref, socket.socket) and ref.family == socket.AF_UNIX
             and ref.type == socket.SOCK_STREAM and ref.fileno() not in (read_fd, -1)]
    return found[0] if len(found) == 1 else None


def _is_grpc_reader(callback: Any) -> bool:
    func = getattr(callback, "func", callback)   # grpc registers functools.partial(reader, loop)
    return getattr(func, "__name__", "") == GRPC_READER and "cygrpc" in type(getattr(func, "__self__", None)).__module__


def drain_grpc_wakeups(loop: asyncio.AbstractEventLoop) -> int:
    """Wraps the readers grpc.aio registered on `loop` (see the module's docstring); call it once
    the loop has a grpc.aio server or channel. Returns how many it wrapped: 0 where grpc.aio
    registers none (not bound to this loop yet, an event loop without a selector, a grpcio that
    wakes the loop another way), and the loop then runs as grpc left it. Each wrapped reader's
    write end is made non-blocking where it is found (see the module's docstring)."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return 0
    wrapped = 0
    for key in list(selector.get_map().values()):
        handle = key.data[0] if isinstance(key.data, tuple) and key.data else None
        callback = getattr(handle, "_callback", None)
        if callback is None or not _is_grpc_reader(callback):
            continue
        loop.remove_reader(key.fd)
        loop.add_reader(key.fd, drained_reader(key.fd, callback))
        wrapped += 1
        writer = wakeup_write_end(getattr(getattr(callback, "func", callback), "__self__", None), key.fd)
        if writer is None:
            log.debug("grpc.aio's wake-up write end not found: its poller may block on a full socket")
        else:
            writer.setblocking(False)
    if wrapped == 0:
        log.debug("no grpc.aio wake-up reader on this loop: completions reach it as grpc delivers them")
    return wrapped
