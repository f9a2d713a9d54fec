"""The chunk service's fair turns with a real pool: a client with a long backlog does not delay
another client's chunk behind it; cancelled and widened jobs keep the pool's slot count right."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from worldstream.core import ChunkKey
from worldstream.unreal_bridge.chunk_service import ChunkService

from .conftest import SPEC


class Recorder:
    """A ChunkService on one thread worker; `get` notes the order in which keys are done."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.service = ChunkService(SPEC, executor=pool, workers=1)
        self.done: list[ChunkKey] = []

    async def get(self, key: ChunkKey, client: str) -> None:
        await self.service.get(key, ("glb",), client=client)
        self.done.append(key)


def test_clients_take_turns_at_the_pool():
    greedy = [ChunkKey(4, x, 3) for x in range(8)]
    polite = ChunkKey(4, 0, -5)

    async def go():
        with ThreadPoolExecutor(max_workers=1) as pool:
            rec = Recorder(pool)
            service, get, done = rec.service, rec.get, rec.done

            tasks = [asyncio.create_task(get(k, "greedy")) for k in greedy]
            await asyncio.sleep(0)
            tasks.append(asyncio.create_task(get(polite, "polite")))
            await asyncio.gather(*tasks)
            return done, service._running, service.stats.as_dict()

    done, running, stats = asyncio.run(go())
    # the greedy client's first job was running; the polite one's comes next, not ninth
    assert done.index(polite) <= 2, done
    assert running == 0 and stats["generated"] == 9


def test_a_client_that_holds_its_frames_waits_behind_one_that_consumes_them():
    """A client that holds what it is sent (no credit returned) keeps its jobs, but each of them
    waits while a client with fewer frames uncredited has one waiting."""
    holder = [ChunkKey(4, x, 11) for x in range(6)]
    active = [ChunkKey(4, x, -11) for x in range(3)]

    async def go():
        with ThreadPoolExecutor(max_workers=1) as pool:
            rec = Recorder(pool)
            service, get, done = rec.service, rec.get, rec.done
            service.backlog = {"holder": 9, "active": 1}.__getitem__

            tasks = [asyncio.create_task(get(k, "holder")) for k in holder]
            await asyncio.sleep(0)
            tasks += [asyncio.create_task(get(k, "active")) for k in active]
            await asyncio.gather(*tasks)
            return done, service.stats.as_dict()

    done, stats = asyncio.run(go())
    # the holder's first job was running; then all of the active client's, then the holder's rest
    assert done[:4] == [holder[0]] + active and done[4:] == holder[1:], done
    assert stats["generated"] == 9


def test_cancelled_queued_jobs_free_their_turn_and_never_run():
    keys = [ChunkKey(4, x, 7) for x in range(6)]

    async def go():
        with ThreadPoolExecutor(max_workers=1) as pool:
            service = ChunkService(SPEC, executor=pool, workers=1)
            tasks = [asyncio.create_task(service.get(k, ("glb",), client="a")) for k in keys]
            await asyncio.sleep(0)
            for t in tasks[1:]:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.05)
            late = await service.get(ChunkKey(4, 9, 9), ("glb",), client="b")  # the pool is free again
            return service._running, service._queues, service.stats.as_dict(), late

    running, queues, stats, late = asyncio.run(go())
    assert "mesh.glb" in late and running == 0 and not queues
    assert stats["cancelled"] == 5 and stats["generated"] == 2


def test_a_client_whose_queue_emptied_keeps_its_turn_ahead_of_clients_that_came_later():
    """A client re-planning every view empties and refills its queue all the time: its next job
    goes before those of clients that came after its last turn, not behind all of them."""
    newcomers = [ChunkKey(4, x, 13) for x in range(5)]

    async def go():
        with ThreadPoolExecutor(max_workers=1) as pool:
            rec = Recorder(pool)
            get, done = rec.get, rec.done
            await get(ChunkKey(4, 0, 15), "replanner")  # its turn; its queue is empty again
            tasks = [asyncio.create_task(get(k, f"new{i}")) for i, k in enumerate(newcomers)]
            await asyncio.sleep(0)
            tasks.append(asyncio.create_task(get(ChunkKey(4, 1, 15), "replanner")))
            await asyncio.gather(*tasks)
            return done

    done = asyncio.run(go())
    # the first newcomer's job was running; the replanner's comes next, not after the other four
    assert done[1:3] == [newcomers[0], ChunkKey(4, 1, 15)], done
