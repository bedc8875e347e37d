"""A hostile template: what a model developer would try in order to reach the platform's secrets,
other tenants' data, its services and the host. Used by scripts/smoke/hostile.py.

`train` (and `predict` with the query `{"probe": ...}`) run every probe of `train_args["targets"]`
and report each as `blocked: ...` or `LEAKED: ...` — in the trial log for training, as the
prediction for serving. `train_args["mode"]` instead makes it hit one limit without catching
anything (`memory`, `processes`, `scratch`, `cpu`, `file`), so the trial must end with that limit named
in its error. The query `{"hang": true}` never returns.
"""

import glob
import json
import os
import socket
import time

from rafiki.model import BaseModel, FixedKnob, utils

SECRET_MARKERS = ("DUMA_", "SUPERADMIN", "JWT", "PASSWORD", "postgres://", "redis://")


def _leaks(text):
    return [marker for marker in SECRET_MARKERS if marker in text]


def probe(targets):
    found = {}

    env = {k: v for k, v in os.environ.items()}
    leaked = _leaks(json.dumps(env))
    found["environment"] = f"LEAKED: {leaked}" if leaked else f"blocked: only {sorted(env)}"

    others = [p for p in glob.glob("/proc/[0-9]*") if int(os.path.basename(p)) != os.getpid()]
    readable = []
    for pid_dir in others:
        try:
            with open(os.path.join(pid_dir, "environ"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if _leaks(text):
                readable.append(pid_dir)
        except OSError:
            pass
    found["/proc/*/environ"] = f"LEAKED: {readable}" if readable else f"blocked: {len(others)} other processes, none with secrets"

    for path in targets.get("files", []):
        try:
            with open(path, "rb") as f:
                f.read(64)
            found[f"read {path}"] = "LEAKED: readable"
        except OSError as error:
            found[f"read {path}"] = f"blocked: {error.strerror}"

    for path in targets.get("dirs", []):
        try:
            found[f"list {path}"] = f"LEAKED: {os.listdir(path)[:5]}"
        except OSError as error:
            found[f"list {path}"] = f"blocked: {error.strerror}"

    for path in targets.get("writes", []):
        try:
            with open(path, "w") as f:
                f.write("a hostile template was here")
            found[f"write {path}"] = "LEAKED: written"
        except OSError as error:
            found[f"write {path}"] = f"blocked: {error.strerror}"

    for host, port in targets.get("tcp", []):
        try:
            socket.create_connection((host, port), timeout=2).close()
            found[f"connect {host}:{port}"] = "LEAKED: connected"
        except OSError as error:
            found[f"connect {host}:{port}"] = f"blocked: {error.strerror or error}"

    for path in targets.get("unix", []):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(path)
            s.close()
            found[f"connect {path}"] = "LEAKED: connected"
        except OSError as error:
            found[f"connect {path}"] = f"blocked: {error.strerror or error}"

    # A process bomb, caught: how many processes could it start?
    children, error = [], None
    try:
        for _ in range(targets.get("max_processes", 2000)):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as e:
        error = e
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    found["process bomb"] = (
        f"blocked: stopped after {len(children)} ({error.strerror})" if error else f"LEAKED: {len(children)} processes"
    )

    # A memory bomb, caught.
    try:
        block = bytearray(targets.get("memory_bomb_bytes", 16 << 30))
        found["memory bomb"] = f"LEAKED: allocated {len(block)} bytes"
        del block
    except MemoryError:
        found["memory bomb"] = "blocked: MemoryError"

    try:
        import duma_leak_probe

        leaked = _leaks(json.dumps(duma_leak_probe.FOUND))
        found["dependency build step"] = (
            f"LEAKED: {leaked}" if leaked else f"blocked: its build saw {duma_leak_probe.FOUND}"
        )
    except ImportError:
        pass
    return found


def hit_limit(mode):
    if mode == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(256 << 20))
    if mode == "processes":
        while True:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
    if mode == "scratch":
        with open("scratch-filler", "wb") as f:
            while True:
                f.write(b"x" * (8 << 20))
                f.flush()
    if mode == "cpu":
        while True:
            pass
    if mode == "file":
        with open("/job/out/huge", "wb") as f:
            while True:
                f.write(b"x" * (8 << 20))
                f.flush()
    raise ValueError(f"unknown mode {mode}")


class HostileProbe(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._targets = {}

    def train(self, dataset_path, shared_params=None, **train_args):
        if train_args.get("mode"):
            hit_limit(train_args["mode"])
        self._targets = train_args.get("targets", {})
        for name, outcome in probe(self._targets).items():
            utils.logger.log(f"probe {name}: {outcome}")

    def evaluate(self, dataset_path):
        return 1.0

    def predict(self, queries):
        answers = []
        for query in queries:
            if isinstance(query, dict) and query.get("hang"):
                while True:
                    time.sleep(60)
            answers.append(probe(self._targets) if isinstance(query, dict) and query.get("probe") else None)
        return answers

    def dump_parameters(self):
        return {"targets": json.dumps(self._targets)}

    def load_parameters(self, params):
        self._targets = json.loads(params["targets"])
