"""Whose job goes to the generator pool next: fair turns among clients, sans-I/O.

The rule, in order:
1. the client least behind: the fewest chunk frames sent and not credited back (`backlog`, the
   server's count) plus its jobs already in the pool, so a client with nothing on the way is served
   before one whose next chunk is being made;
2. among equals, the one whose last turn is oldest (round robin). A client keeps its place when its
   queue empties and fills again (a client re-planning at 30 Hz cancels and re-asks its jobs all
   the time); a client seen for the first time joins the end of the current round, behind every
   client served before it came.

`Turns` holds only this bookkeeping; `ChunkService` owns the queues and the pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable


class Turns:
    """The turn bookkeeping of one chunk service (see the module's rule)."""

    def __init__(self) -> None:
        self._clock = 0  # counts the turns given and the newcomers
        self._last: dict[Hashable, int] = {}  # client -> the clock when its last turn was given (or it came)
        self._in_pool: Counter = Counter()  # client -> its jobs handed to the pool and not finished

    def arrive(self, client: Hashable) -> None:
        """`client` has a job waiting: a client seen for the first time joins the end of the round."""
        if client not in self._last:
            self._clock += 1  # after every turn given so far, and after earlier newcomers
            self._last[client] = self._clock

    def next(self, waiting: Iterable[Hashable], backlog: Callable[[Hashable], int]) -> Hashable:
        """The client of `waiting` (non-empty) whose job goes next; counts its turn and its job in the
        pool. Ties on both keys go to the first in `waiting`."""
        client = min(waiting, key=lambda c: (backlog(c) + self._in_pool[c], self._last.get(c, self._clock + 1)))
        self._clock += 1
        self._last[client] = self._clock
        self._in_pool[client] += 1
        return client

    def finished(self, client: Hashable) -> None:
        """One job of `client` handed out by `next` left the pool (done, failed or cancelled)."""
        self._in_pool[client] -= 1
        if self._in_pool[client] <= 0:
            del self._in_pool[client]

    def forget(self, client: Hashable) -> None:
        """`client` is gone (its connection closed): drop its place."""
        self._last.pop(client, None)

    def in_pool(self, client: Hashable) -> int:
        """How many of `client`'s jobs are in the pool."""
        return self._in_pool[client]
