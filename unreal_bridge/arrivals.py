"""Arrival times of websocket messages, for rate limits that judge a client by when it sent.

A server under load processes messages late: its event loop stalls, a connection's handler
falls behind. Rate-limiting by processing time then mistakes a backlog for a burst and punishes a
polite client for the server's stall (issue 19, D1). Here every complete message is stamped when
its bytes reach the process (`data_received`), not when the handler reads it. Bytes that waited
in the kernel while the event loop was stalled cannot be dated exactly: a `LoopWatch` ticking on
the loop tells when the loop last ran, and the messages of such a read are spread evenly over
the stall (`session.spread_arrivals`), since they may have come at any time during it.

`data_received` is asyncio's protocol callback; `process_event` is websockets' (17.x) hook for
each parsed frame. Should a websockets release stop calling the latter, no message is stamped
and `arrival()` falls back to the time the handler reads it (the old behaviour), nothing worse.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame

from .session import spread_arrivals

TICK_S = 0.05


class LoopWatch:
    """`last_tick`: the last time (time.monotonic) the event loop ran this watch's timer; a loop
    that was busy or blocked for longer shows a gap."""

    def __init__(self) -> None:
        self.last_tick = time.monotonic()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(TICK_S)


class StampedConnection(ServerConnection):
    """A ServerConnection that records each complete incoming data message's arrival time;
    `arrival()` pops the time of the next message the handler reads (messages are read in order)."""

    watch: LoopWatch | None = None  # set on a subclass by `stamped_connection`

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arrivals: deque[float] = deque()
        self._last_read: float | None = None
        self._batch = 0

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self._batch = 0
        super().data_received(data)  # counts the messages completed by these bytes (process_event)
        start = now if self._last_read is None else self._last_read
        if self.watch is not None:
            start = max(start, self.watch.last_tick)
        self._arrivals.extend(spread_arrivals(start, now, self._batch))
        self._last_read = now

    def process_event(self, event) -> None:
        if isinstance(event, Frame) and event.fin and event.opcode in DATA_OPCODES:
            self._batch += 1
        super().process_event(event)

    def arrival(self) -> float:
        """Arrival time of the message the handler just read (now, if unknown)."""
        return self._arrivals.popleft() if self._arrivals else time.monotonic()


def stamped_connection(watch: LoopWatch) -> type[StampedConnection]:
    """A StampedConnection class whose connections consult `watch`."""
    return type("StampedConnection", (StampedConnection,), {"watch": watch})
