"""Framing of the runner protocol: each frame is a 4-byte big-endian unsigned length followed by
that many bytes of UTF-8 JSON (one object). See python/PROTOCOL.md."""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO, Dict, Optional

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
# Frames carry commands, small results and log records; bulk data goes through files.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024


class FrameError(Exception):
    """The byte stream is not a valid sequence of frames; the channel cannot be trusted after it."""


try:  # a faster JSON codec where the environment has one (Duma's base environment does)
    import orjson as _orjson
except ImportError:  # pragma: no cover - the standard library does the same, slower
    _orjson = None

_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def encode_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; NaN and infinity are refused (``ValueError``)."""
    return _ENCODER.encode(value).encode("utf-8")


def encode_checked_json(value: Any) -> bytes:
    """:func:`encode_json` for a value already checked to hold only JSON values and no NaN or
    infinity (predictions, after ``check_predictions``): with orjson when present, which writes
    no NaN check of its own. What orjson does not take (an int past 64 bits, a lone surrogate)
    goes to the standard encoder, which decides as it always did."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value)
        except TypeError:
            pass
    return encode_json(value)


def decode_json(body: bytes) -> Any:
    """A frame body's JSON (``ValueError`` when it is not UTF-8 JSON). orjson reads the same
    values as ``json`` (ints of up to 64 bits, which is all a worker sends), about ten times
    faster on rows of floats."""
    if _orjson is not None:
        return _orjson.loads(body)
    return json.loads(body.decode("utf-8"))


def encode_frame(message: Dict[str, Any]) -> bytes:
    body = encode_json(message)
    return HEADER.pack(len(body)) + body


def write_frame(out: BinaryIO, message: Dict[str, Any], max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
    write_encoded(out, encode_frame(message)[HEADER.size :], max_bytes)


def write_encoded(out: BinaryIO, body: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
    """Writes a frame whose body (one JSON object, UTF-8) is already encoded."""
    if len(body) > max_bytes:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    out.write(HEADER.pack(len(body)) + body)
    out.flush()


def _read_exactly(inp: BinaryIO, n: int) -> bytes:
    chunks, remaining = [], n
    while remaining:
        chunk = inp.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(inp: BinaryIO, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Optional[Any]:
    """The next frame's decoded JSON, or ``None`` at a clean end of stream (between frames).

    Raises :class:`FrameError` for a truncated frame or one over ``max_bytes``, and
    ``ValueError`` for a complete frame whose body is not JSON (the stream is still in sync).
    """
    header = _read_exactly(inp, HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise FrameError("end of stream inside a frame header")
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes exceeds the {max_bytes}-byte limit")
    body = _read_exactly(inp, length)
    if len(body) < length:
        raise FrameError(f"end of stream inside a frame ({len(body)} of {length} bytes)")
    try:
        return decode_json(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"frame body is not UTF-8 JSON: {e}") from None
