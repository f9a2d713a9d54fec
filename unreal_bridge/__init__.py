"""Streaming bridge: the sans-I/O protocol (protocol.py), LOD selection and residency (lod.py);
the server, client and web viewer build on them."""
