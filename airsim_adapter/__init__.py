"""AirSim adapter and a headless AirSim-compatible simulator: msgpack-rpc (rpc.py) under a thin asyncio
server (server.py), the simulator and its RPC methods (sim.py), flight model (flight.py), ground
mosaics for collisions (ground.py), AirSim structs (structs.py), settings.json
(settings.py)."""
