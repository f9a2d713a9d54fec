"""The simulator's RPC layer bounds the calls one connection has running: pipelined calls past
CALLS_IN_FLIGHT wait in the socket (TCP backpressure) instead of each starting a task, and every
call is still answered; another connection is served meanwhile."""

import asyncio

import msgpack

from worldstream.airsim_adapter.server import CALLS_IN_FLIGHT, handle_connection


class BlockingSim:
    """Stands in for the Simulator: `ping` waits until released, counting the calls inside it."""

    def __init__(self):
        self.release = asyncio.Event()
        self.inside = self.most_inside = 0

    async def ping(self):
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.release.wait()
            return True
        finally:
            self.inside -= 1

    def getServerVersion(self):
        return 1


async def read_answers(reader, count):
    unpacker, answers = msgpack.Unpacker(raw=False), []
    while len(answers) < count:
        unpacker.feed(await asyncio.wait_for(reader.read(1 << 16), 10))
        answers.extend(unpacker)
    return answers


def test_pipelined_calls_beyond_the_bound_wait_in_the_socket_and_all_get_answers():
    async def scenario():
        sim = BlockingSim()
        server = await asyncio.start_server(lambda r, w: handle_connection(sim, r, w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            calls = 5 * CALLS_IN_FLIGHT
            writer.write(b"".join(msgpack.packb([0, i, "ping", []]) for i in range(calls)))
            await writer.drain()
            for _ in range(100):
                if sim.inside == CALLS_IN_FLIGHT:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # had the layer read on, more calls would be inside by now
            assert sim.inside == CALLS_IN_FLIGHT
            other_reader, other_writer = await asyncio.open_connection("127.0.0.1", port)
            other_writer.write(msgpack.packb([0, 7, "getServerVersion", []]))
            assert await read_answers(other_reader, 1) == [[1, 7, None, 1]]  # another connection is served
            sim.release.set()
            answers = await read_answers(reader, calls)
            assert sorted(a[1] for a in answers) == list(range(calls)) and all(a[3] is True for a in answers)
            assert sim.most_inside == CALLS_IN_FLIGHT
            for w in (writer, other_writer):
                w.close()

    asyncio.run(scenario())
