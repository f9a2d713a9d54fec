"""Arrival times of websocket messages, for rate limits that judge a client by when it sent.

A server under load processes messages late: its event loop stalls, a connection's handler
falls behind. Rate-limiting by processing time then mistakes a backlog for a burst and punishes a
polite client for the server's stall (issue 19, D1). Here every complete message is stamped when
its bytes reach the process (`data_received`), not when the handler reads it. Bytes that waited
in the kernel while the event loop was stalled, or while the connection's reading was paused
(its handler fell behind), cannot be dated by their read: a `LoopWatch` ticking on the loop tells
when the loop last ran, and on each tick it samples how many bytes wait in the kernel for every
paused connection (FIONREAD), so the messages of the read after a pause are dated to the 50 ms
tick by which their bytes had come (`session.arrivals_from_backlog`); with no samples (the loop
itself stalled) they are spread evenly over the time they may have come in
(`session.arrival_window_start`, `session.spread_arrivals`). That time ends when the kernel last
received data on the socket (TCP_INFO's tcpi_last_data_recv, `session.arrival_window_end`), not
at the late read.

`data_received` is asyncio's protocol callback; `process_event` is websockets' (17.x) hook for
each parsed frame. Should a websockets release stop calling the latter, no message is stamped
and `arrival()` falls back to the time the handler reads it (the old behaviour), nothing worse.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame

from .session import arrival_window_end, arrival_window_start, arrivals_from_backlog

TICK_S = 0.05


class LoopWatch:
    """`last_tick`: the last time (time.monotonic) the event loop ran this watch's timer; a loop
    that was busy or blocked for longer shows a gap."""

    def __init__(self) -> None:
        self.last_tick = time.monotonic()
        self._task: asyncio.Task | None = None
        self.paused: set[StampedConnection] = set()  # connections whose reading is paused: sampled each tick

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            for connection in list(self.paused):
                connection.sample_backlog(self.last_tick)
            await asyncio.sleep(TICK_S)


class StampedConnection(ServerConnection):
    """A ServerConnection that records each complete incoming data message's arrival time;
    `arrival()` pops the time of the next message the handler reads (messages are read in order)."""

    watch: LoopWatch | None = None  # set on a subclass by `stamped_connection`

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arrivals: deque[float] = deque()
        self._last_read: float | None = None
        self._paused_after_read = False
        self._backlog: list[tuple[float, int]] = []  # (time, bytes waiting in the kernel) while paused
        self._batch = 0

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._batch = 0
        super().data_received(data)  # counts the messages completed by these bytes (process_event)
        paused_before = self._paused_after_read or bool(self._backlog)
        start = arrival_window_start(now, self._last_read, self.watch.last_tick if self.watch else None,
                                     paused_before)
        end = arrival_window_end(now, start, _last_data_age(self.transport))
        self._arrivals.extend(arrivals_from_backlog(start, end, self._batch, len(data), self._backlog))
        # what this read left in the kernel came in at the later samples
        self._backlog = [(t, b - len(data)) for t, b in self._backlog if b > len(data)]
        self._last_read = now
        # reading stops when the handler falls max_queue frames behind; the next read comes after
        # it caught up, however often the loop ran meanwhile: the watch samples the kernel's
        # queue of this socket until then, so the next read still knows when its bytes came
        self._paused_after_read = bool(getattr(getattr(self, "recv_messages", None), "paused", False))
        if self.watch is not None:
            if self._paused_after_read:
                self.watch.paused.add(self)
            else:
                self.watch.paused.discard(self)

    def sample_backlog(self, now: float) -> None:
        """Record how many bytes wait unread in the kernel for this socket (FIONREAD)."""
        waiting = _bytes_waiting(self.transport)
        if waiting is None:
            if self.watch is not None:
                self.watch.paused.discard(self)
        elif waiting > (self._backlog[-1][1] if self._backlog else 0):
            self._backlog.append((now, waiting))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watch is not None:
            self.watch.paused.discard(self)
        super().connection_lost(exc)

    def process_event(self, event) -> None:
        if isinstance(event, Frame) and event.fin and event.opcode in DATA_OPCODES:
            self._batch += 1
        super().process_event(event)

    def arrival(self) -> float:
        """Arrival time of the message the handler just read (now, if unknown)."""
        return self._arrivals.popleft() if self._arrivals else time.monotonic()


def _bytes_waiting(transport) -> int | None:
    """Bytes in the kernel's receive queue of `transport`'s socket, None where that cannot be read."""
    try:
        import fcntl
        import termios

        sock = transport.get_extra_info("socket")
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except (ImportError, AttributeError, OSError, ValueError):
        return None


def _last_data_age(transport) -> float | None:
    """Seconds since `transport`'s TCP socket last received data (the kernel's TCP_INFO
    tcpi_last_data_recv, whole milliseconds), None where that cannot be read (not TCP, not Linux)."""
    try:
        sock = transport.get_extra_info("socket")
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        return struct.unpack_from("I", info, _LAST_DATA_RECV)[0] / 1000.0
    except (AttributeError, OSError, ValueError, struct.error):
        return None


# struct tcp_info (linux/tcp.h): 8 one-byte fields, nine 32-bit ones, then tcpi_last_data_sent,
# tcpi_last_ack_sent and tcpi_last_data_recv (ms)
_LAST_DATA_RECV = 52
_TCP_INFO_BYTES = 104


def stamped_connection(watch: LoopWatch) -> type[StampedConnection]:
    """A StampedConnection class whose connections consult `watch`."""
    return type("StampedConnection", (StampedConnection,), {"watch": watch})
