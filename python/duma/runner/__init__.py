"""The template runner: ``python -m duma.runner`` serves one Python model template to a Rust
worker over stdin/stdout (protocol in python/PROTOCOL.md)."""

from .protocol import PROTOCOL_VERSION, FrameError, encode_frame, read_frame, write_frame

__all__ = ["PROTOCOL_VERSION", "FrameError", "encode_frame", "read_frame", "write_frame"]
