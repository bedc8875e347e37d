"""Shared test helpers: small datasets and a driver for the runner subprocess."""

import json
import os
import select
import struct
import subprocess
import sys
import time

import numpy as np

from conftest import PYTHON_DIR, TEMPLATES


def template(name):
    return os.path.join(TEMPLATES, name)


def write_blobs_csv(path, n=60, seed=0):
    """Two separable classes in columns x1, x2 with target y (0/1), plus an unused text column."""
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,note,y"]
    for i in range(n):
        y = i % 2
        x1, x2 = rng.normal(loc=3.0 * y, scale=0.5, size=2)
        lines.append(f"{x1:.6f},{x2:.6f},row{i},{y}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


class RunnerProcess:
    """Drives `python -m duma.runner` with the framed protocol, as the Rust worker does."""

    def __init__(self, workdir, timeout=60, extra_args=()):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = PYTHON_DIR
        self.stderr_path = os.path.join(workdir, "runner.stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "duma.runner", "--workdir", str(workdir), *extra_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self.timeout = timeout
        self._buf = b""
        self._next_id = 0
        self.ready = self.read_frame()

    def stderr(self):
        self._stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def _read_exactly(self, n, deadline):
        fd = self.proc.stdout.fileno()
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"runner did not answer; stderr:\n{self.stderr()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(f"runner closed stdout; stderr:\n{self.stderr()}")
            self._buf += chunk
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def read_frame(self):
        deadline = time.monotonic() + self.timeout
        (length,) = struct.unpack(">I", self._read_exactly(4, deadline))
        return json.loads(self._read_exactly(length, deadline))

    def send(self, message):
        body = json.dumps(message).encode()
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        self.proc.stdin.flush()

    def send_raw(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, cmd, **fields):
        """Sends a command; returns (final frame, log frames that came before it)."""
        self._next_id += 1
        request_id = self._next_id
        self.send({"id": request_id, "cmd": cmd, **fields})
        logs = []
        while True:
            frame = self.read_frame()
            if frame["type"] == "log":
                logs.append(frame)
                continue
            assert frame["id"] == request_id, frame
            return frame, logs

    def call(self, cmd, **fields):
        """Like request, but asserts success and returns (result, logs)."""
        frame, logs = self.request(cmd, **fields)
        assert frame["type"] == "reply", f"{cmd} failed: {frame}\nstderr:\n{self.stderr()}"
        return frame["result"], logs

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self._stderr.close()
