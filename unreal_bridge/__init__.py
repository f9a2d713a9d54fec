"""Streaming bridge to Unreal / browsers (issue: streaming bridge; not implemented yet)."""
