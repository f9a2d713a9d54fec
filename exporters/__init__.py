"""Exporters: pure functions from a chunk to bytes, and the one place that writes files atomically."""
