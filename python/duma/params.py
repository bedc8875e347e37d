"""Model parameters on disk without pickle.

A template's ``dump_parameters()`` returns a dict of ``str``, ``int``, ``float``, ``bool``,
``None``, ``bytes`` and numpy arrays, nested in lists and dicts. This module saves it as one zip
file (uncompressed, ZIP64 for big arrays)::

    duma-params.json    {"format": "duma-params", "version": 1, "params": {name: node}}
    arrays/<n>.npy      one numpy array each, written and read with allow_pickle=False
    bytes/<n>.bin       one bytes value each

A node is a JSON null/bool/number/string, a JSON array of nodes (lists and tuples), or an object
with one tagged key: ``{"$dict": {key: node}}`` (a nested dict), ``{"$array": "arrays/0.npy"}``,
``{"$bytes": "bytes/0.bin"}`` or ``{"$float": "nan" | "inf" | "-inf"}`` (JSON has no non-finite
numbers). Numpy scalars are stored as Python numbers; tuples come back as lists.

Object arrays, arbitrary objects and non-string keys are refused when saving; loading never
unpickles anything (object arrays in a crafted file fail to load).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from typing import Any, Dict, Union

import numpy as np

FORMAT = "duma-params"
VERSION = 1
MANIFEST = "duma-params.json"
# What saved parameters start with: a zip local file header.
MAGIC = b"PK\x03\x04"

PathLike = Union[str, os.PathLike]


class ParamsError(ValueError):
    """Parameters that cannot be saved or loaded safely; the message names the offending value."""


def save(params: Dict[str, Any], path: PathLike) -> int:
    """Writes ``params`` to ``path`` (atomically: a temporary file, then a rename). Returns the
    file size in bytes."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".params-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(params, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return os.path.getsize(path)


def dumps(params: Dict[str, Any]) -> bytes:
    """``params`` in the saved format, as bytes."""
    buf = io.BytesIO()
    _write(params, buf)
    return buf.getvalue()


def load(path: PathLike) -> Dict[str, Any]:
    """Reads parameters written by :func:`save`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return _read(f, path)
    except OSError as e:
        raise ParamsError(f"cannot read parameters file `{path}`: {e}") from None


def loads(data: bytes) -> Dict[str, Any]:
    """Reads parameters from bytes produced by :func:`dumps` (or a saved file's content)."""
    return _read(io.BytesIO(data), "<bytes>")


def is_params(data: bytes) -> bool:
    """True when ``data`` looks like Duma's Python parameters format (checks the zip magic only)."""
    return data[:4] == MAGIC


# -- writing ------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.arrays = 0
        self.blobs = 0

    def node(self, value, where: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.ndarray):
            return {"$array": self.array(value, where)}
        if isinstance(value, np.generic):
            if isinstance(value, (np.object_, np.void)):
                raise ParamsError(f"{where} is a numpy `{type(value).__name__}` scalar; only numbers, bools and strings are allowed")
            return self.node(value.item(), where)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isnan(value):
                return {"$float": "nan"}
            if math.isinf(value):
                return {"$float": "inf" if value > 0 else "-inf"}
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            name = f"bytes/{self.blobs}.bin"
            self.blobs += 1
            self.zf.writestr(name, bytes(value))
            return {"$bytes": name}
        if isinstance(value, (list, tuple)):
            return [self.node(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {"$dict": self.mapping(value, where)}
        raise ParamsError(
            f"{where} is a `{type(value).__module__}.{type(value).__qualname__}`; parameters may only hold "
            "str, int, float, bool, None, bytes, numpy arrays, and lists and dicts of those "
            "(serialise other objects to bytes or arrays yourself; pickle is never used)"
        )

    def mapping(self, value: dict, where: str):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ParamsError(f"{where} has key {key!r} of type `{type(key).__name__}`; keys must be strings")
            out[key] = self.node(v, f"{where}[{key!r}]")
        return out

    def array(self, array: np.ndarray, where: str) -> str:
        if array.dtype.hasobject:
            raise ParamsError(
                f"{where} is a numpy array of dtype `{array.dtype}` (Python objects), which cannot be saved "
                "without pickle; convert it to a numeric or string dtype"
            )
        name = f"arrays/{self.arrays}.npy"
        self.arrays += 1
        with self.zf.open(name, "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
        return name


def _write(params, f) -> None:
    if not isinstance(params, dict):
        raise ParamsError(f"parameters should be a dict, not `{type(params).__name__}`")
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        writer = _Writer(zf)
        tree = writer.mapping(params, "params")
        manifest = {"format": FORMAT, "version": VERSION, "params": tree}
        zf.writestr(MANIFEST, json.dumps(manifest, allow_nan=False, separators=(",", ":")))


# -- reading ------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, zf: zipfile.ZipFile, source: str):
        self.zf = zf
        self.source = source
        self.names = set(zf.namelist())

    def fail(self, reason: str):
        raise ParamsError(f"parameters `{self.source}` are corrupt: {reason}")

    def member(self, name, prefix: str, suffix: str) -> str:
        if not (isinstance(name, str) and name.startswith(prefix) and name.endswith(suffix) and name in self.names):
            self.fail(f"missing or invalid entry {name!r}")
        return name

    def node(self, node, depth: int = 0):
        if depth > 100:
            self.fail("nesting is too deep")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.node(v, depth + 1) for v in node]
        if isinstance(node, dict) and len(node) == 1:
            ((tag, value),) = node.items()
            if tag == "$dict" and isinstance(value, dict):
                return {k: self.node(v, depth + 1) for k, v in value.items()}
            if tag == "$array":
                return self.array(self.member(value, "arrays/", ".npy"))
            if tag == "$bytes":
                return self.zf.read(self.member(value, "bytes/", ".bin"))
            if tag == "$float" and value in ("nan", "inf", "-inf"):
                return float(value)
        self.fail(f"unknown node {json.dumps(node)[:80]}")

    def array(self, name: str) -> np.ndarray:
        with self.zf.open(name) as f:
            try:
                return np.lib.format.read_array(f, allow_pickle=False)
            except ValueError as e:
                self.fail(f"array `{name}` cannot be read without pickle ({e})")


def _read(f, source: str) -> Dict[str, Any]:
    head = f.read(4)
    f.seek(0)
    if head[:1] == b"\x80":
        raise ParamsError(
            f"parameters `{source}` are a Python pickle; Duma never unpickles parameters "
            "(re-save them with duma.params.save)"
        )
    if head != MAGIC:
        raise ParamsError(f"`{source}` is not in Duma's parameters format (no zip header)")
    try:
        with zipfile.ZipFile(f, "r") as zf:
            try:
                manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
            except KeyError:
                raise ParamsError(f"`{source}` is a zip file without `{MANIFEST}`: not Duma parameters") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ParamsError(f"`{source}` is not in Duma's parameters format")
            if manifest.get("version") != VERSION:
                raise ParamsError(
                    f"parameters format version {manifest.get('version')!r} is not supported; "
                    f"this version of duma reads version {VERSION}"
                )
            params = manifest.get("params")
            if not isinstance(params, dict):
                raise ParamsError(f"parameters `{source}` are corrupt: `params` is not an object")
            reader = _Reader(zf, source)
            return {k: reader.node(v) for k, v in params.items()}
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, EOFError) as e:
        raise ParamsError(f"parameters `{source}` are corrupt: {e}") from None
