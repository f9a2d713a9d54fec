"""AirSim adapter and headless AirSim-compatible simulator (issue: AirSim adapter; not implemented yet)."""
