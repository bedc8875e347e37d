"""The hostile-template drill against a running `duma up`: a model developer uploads a template
(python/tests/templates/hostile_probe.py) that, while training and while serving, tries to read
the platform's secrets and other tenants' objects, list the data directory, connect to every
service listening on this host (TCP and unix sockets), write outside its scratch space, start a
process bomb and allocate a memory bomb; its declared dependency, served from a local package
index, does the same from its build step. Every probe must be blocked, nothing may appear on the
host, the limits it hits must be named in the trial's error, a `predict` that never returns must
be answered 504 and the model served again, and another user's job must still train. Last, the
stores are probed with one service's own credentials (as if a template had stolen them): they
reach only what that service needs, and nothing answers without a password.

    python scripts/smoke/hostile.py --admin http://localhost:13000 --data-dir DIR \
        --superadmin-password ... --index-port 18999

`duma up` must run with PIP_EXTRA_INDEX_URL=http://127.0.0.1:<index-port>/simple/ and
PIP_TRUSTED_HOST=127.0.0.1, so pip can fetch the probe dependency from this script's index.
"""

import argparse
import glob
import http.server
import io
import os
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client, DumaClientError  # noqa: E402
from scenario import Steps, wait_for, write_dataset  # noqa: E402

TASK = "TABULAR_CLASSIFICATION"
TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "..", "python", "tests", "templates", "hostile_probe.py")
PACKAGE = "duma-leak-probe"

# The build step of the probe dependency: what it can read and reach, into the package itself.
SETUP_PY = '''
import glob, json, os, socket
from setuptools import setup
leaks = []
for path in {files!r}:
    try:
        open(path, "rb").read(16)
        leaks.append("read " + path)
    except OSError:
        pass
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        if b"DUMA_" in open(path, "rb").read():
            leaks.append("environ " + path)
    except OSError:
        pass
for path in {sockets!r}:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        leaks.append("connect " + path)
    except OSError:
        pass
env = sorted(os.environ)
leaks += [name for name in env if name.startswith("DUMA_") or "PASSWORD" in name]
os.makedirs("duma_leak_probe", exist_ok=True)
with open("duma_leak_probe/__init__.py", "w") as f:
    f.write("FOUND = " + repr({{"leaks": leaks, "environment": env}}) + "\\n")
setup(name="{name}", version="{version}", packages=["duma_leak_probe"])
'''


def listening_tcp_ports():
    """Every TCP port listening on this host (IPv4 and IPv6), from /proc/net."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return sorted(ports)


def unix_sockets(root):
    found = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                if os.path.exists(path) and (os.stat(path).st_mode & 0o170000) == 0o140000:
                    found.append(path)
            except OSError:
                pass
    return found


def sdist(version, files, sockets):
    """The probe dependency as an sdist (bytes)."""
    buffer = io.BytesIO()
    root = f"{PACKAGE}-{version}"
    members = {
        "setup.py": SETUP_PY.format(files=files, sockets=sockets, name=PACKAGE, version=version),
        "PKG-INFO": f"Metadata-Version: 1.0\nName: {PACKAGE}\nVersion: {version}\n",
    }
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def serve_index(port, version, archive):
    """A PEP 503 index on loopback holding only the probe dependency."""
    filename = f"{PACKAGE}-{version}.tar.gz"

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.rstrip("/") == f"/simple/{PACKAGE}":
                body = f'<html><body><a href="/files/{filename}">{filename}</a></body></html>'.encode()
                kind = "text/html"
            elif self.path == f"/files/{filename}":
                body, kind = archive, "application/gzip"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def service_accounts(data):
    """Probes the stores with the predictor's own credentials and with none: what each reaches."""
    password = open(os.path.join(data, "secrets", "predictor-password")).read().strip()
    socket_dir = os.path.join(data, "postgres")
    redis_socket = os.path.join(data, "redis", "redis.sock")

    def psql(user, password, sql):
        env = {"PATH": os.environ["PATH"]}
        if password is not None:
            env["PGPASSWORD"] = password
        done = subprocess.run(["psql", "-X", "-w", "-h", socket_dir, "-U", user, "-d", "duma", "-tAc", sql],
                              capture_output=True, text=True, env=env, timeout=30)
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def redis(*command, user=None, password=None):
        login = ["--user", user, "--pass", password, "--no-auth-warning"] if user else []
        done = subprocess.run(["redis-cli", "-s", redis_socket, *login, *command],
                              capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=30)
        return done.stdout.strip() + done.stderr.strip()

    probes = {
        "predictor reads its routes": (psql("duma_predictor", password, "SELECT count(*) FROM inference_jobs"),
                                       lambda r: r[0]),
        "predictor reads users": (psql("duma_predictor", password, "SELECT email FROM users"),
                                  lambda r: not r[0] and "permission denied" in r[1]),
        "predictor deletes prediction keys": (psql("duma_predictor", password, "DELETE FROM prediction_keys"),
                                              lambda r: not r[0] and "permission denied" in r[1]),
        "superuser without a password": (psql("postgres", None, "SELECT 1"),
                                         lambda r: not r[0] and "password" in r[1]),
        "redis predictor PING": (redis("PING", user="duma-predictor", password=password), lambda r: r == "PONG"),
        "redis predictor GET": (redis("GET", "duma:anything", user="duma-predictor", password=password),
                                lambda r: "NOPERM" in r),
        "redis predictor CONFIG": (redis("CONFIG", "GET", "*", user="duma-predictor", password=password),
                                   lambda r: "NOPERM" in r),
        "redis without a user": (redis("PING"), lambda r: "NOAUTH" in r),
    }
    failures = []
    for name, (outcome, expected) in probes.items():
        text = outcome[1] if isinstance(outcome, tuple) else outcome
        print(f"    account  {name:<44} {text.splitlines()[-1][:90] if text else ''}", flush=True)
        if not expected(outcome):
            failures.append(f"service accounts: {name}: {text[:300]}")
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--data-dir", required=True, help="duma up's data directory")
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("--index-port", type=int, required=True)
    args = parser.parse_args()
    data = os.path.realpath(args.data_dir)

    steps = Steps()
    print(f"smoke: hostile templates against {args.admin}", flush=True)
    admin = urlparse(args.admin)
    new_client = lambda: Client(admin.hostname, admin.port, timeout=60)  # noqa: E731
    superadmin = new_client()
    superadmin.login("superadmin@rafiki", args.superadmin_password)
    users = {}
    for role in ("MODEL_DEVELOPER", "APP_DEVELOPER"):
        email, password = f"hostile-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
        superadmin.create_user(email, password, role)
        users[role] = new_client()
        users[role].login(email, password)
    attacker = users["MODEL_DEVELOPER"]
    other = users["APP_DEVELOPER"]

    marker = uuid.uuid4().hex[:12]
    # (The sandbox's own /tmp is its scratch space: writing there is allowed, and must not reach
    # the host's /tmp, checked from here afterwards.)
    host_writes = [
        os.path.join(data, f"hostile-{marker}"),
        f"/var/tmp/hostile-{marker}",
        os.path.join(data, "envs", f"hostile-{marker}.pth"),
        f"/usr/lib/hostile-{marker}",
    ]
    scratch_write = f"/tmp/hostile-{marker}"
    secrets = sorted(glob.glob(os.path.join(data, "secrets", "*")))
    sockets = unix_sockets(data)
    targets = {
        "files": secrets + ["/etc/shadow", os.path.join(data, "state.json")],
        "dirs": [data, os.path.join(data, "objects"), os.path.join(data, "secrets"), "/root", "/home"],
        "writes": host_writes,
        "tcp": [["127.0.0.1", port] for port in listening_tcp_ports()] + [["1.1.1.1", 53]],
        "unix": sockets,
        "max_processes": 2000,
    }
    print(f"    {len(secrets)} secret files, {len(sockets)} unix sockets, {len(targets['tcp'])} TCP targets",
          flush=True)

    version = f"1.0.post{random.randrange(10**9)}"
    index = serve_index(args.index_port, version, sdist(version, secrets + ["/etc/shadow"], sockets))
    try:
        with tempfile.TemporaryDirectory(prefix="duma-hostile-") as work:
            train_csv = os.path.join(work, "train.csv")
            write_dataset(train_csv, 60, 3)
            dataset = other.create_dataset(f"hostile-{marker}", TASK, train_csv)
            attacker_data = attacker.create_dataset(f"own-{marker}", TASK, train_csv)
        model = steps.run("upload the hostile template", lambda: attacker.create_model(
            f"hostile-{marker}", TASK, TEMPLATE, "HostileProbe", dependencies={PACKAGE: version},
            access_right="PUBLIC"))
        plain = attacker.create_model(f"hostile-plain-{marker}", TASK, TEMPLATE, "HostileProbe",
                                      access_right="PUBLIC")

        def train(app, model_id, train_args, client=other, data_id=None):
            data_id = data_id or dataset["id"]
            client.create_train_job(app, TASK, data_id, data_id, budget={"MODEL_TRIAL_COUNT": 1},
                                    models=[model_id], train_args=train_args)

            def ended():
                job = client.get_train_job(app)
                return job if job["status"] in ("STOPPED", "ERRORED") else None

            wait_for(f"the end of {app}", ended, deadline=600)
            return client.get_trials_of_train_job(app)

        failures = []

        def check(where, outcomes):
            for name, outcome in outcomes:
                print(f"    {where:<8} {name:<44} {outcome[:90]}", flush=True)
                if not outcome.startswith("blocked"):
                    failures.append(f"{where}: {name}: {outcome}")

        # 1. Training: every probe, including the dependency's build step.
        app = f"hostile-{marker}"
        trials = steps.run("train the probe (pip build step included)",
                           lambda: train(app, model["id"], {"targets": targets}))
        if [t["status"] for t in trials] != ["COMPLETED"]:
            raise SystemExit(f"smoke: the probe trial did not complete: {trials}")
        messages = [m["message"] for m in other.get_trial_logs(trials[0]["id"])["messages"]]
        outcomes = [m[len("probe "):].split(": ", 1) for m in messages if m.startswith("probe ")]
        if len(outcomes) < 10 or not any(name == "dependency build step" for name, _ in outcomes):
            raise SystemExit(f"smoke: the probe reported too little: {messages}")
        check("train", outcomes)

        # 2. Serving: the same probes from the serving runner; a predict that never returns.
        other.create_inference_job(app)
        wait_for("the probe served", lambda: other.get_running_inference_job(app)["status"] == "RUNNING")
        answer = steps.run("probe while serving", lambda: wait_for(
            "a probe prediction", lambda: other.predict(app, query={"probe": True})))
        check("serve", sorted(answer.items()))
        host = other.get_running_inference_job(app)["predictor_host"]
        began = time.monotonic()
        hung = requests.post(f"http://{host}/predict", json={"query": {"hang": True}}, timeout=60)
        print(f"    a predict that never returns: {hung.status_code} after {time.monotonic() - began:.1f} s",
              flush=True)
        if hung.status_code != 504:
            failures.append(f"a hanging predict answered {hung.status_code}: {hung.text[:200]}")
        steps.run("served again after the hang", lambda: wait_for(
            "a prediction after the hang", lambda: other.predict(app, query={"probe": True})))
        other.stop_inference_job(app)

        # 3. Limits: each one hit ends the trial with the limit named.
        for mode, expected in [("memory", "memory limit"), ("processes", "processes")]:
            trials = steps.run(f"a {mode} bomb ends its trial", lambda: train(
                f"hostile-{mode}-{marker}", plain["id"], {"mode": mode}, client=attacker,
                data_id=attacker_data["id"]))
            logs = attacker.get_trial_logs(trials[0]["id"])["messages"] if trials else []
            error = next((m["message"] for m in logs if expected in m["message"]), "")
            print(f"    {mode}: {error[:200]!r}", flush=True)
            if [t["status"] for t in trials] != ["ERRORED"] or not error:
                failures.append(f"the {mode} bomb's trial: {trials} {logs}")

        # 4. Nothing reached the host; another user's training is unaffected.
        for path in host_writes + [scratch_write]:
            if os.path.exists(path):
                failures.append(f"{path} was written on the host")
        builtin = [m for m in other.get_available_models(TASK) if m["name"] == "LogisticRegression"][0]
        trials = steps.run("another user's job still trains",
                           lambda: train(f"after-{marker}", builtin["id"], {"features": ["x1", "x2"], "target": "y"}))
        if [t["status"] for t in trials] != ["COMPLETED"]:
            failures.append(f"a plain job after the drill: {trials}")

        # 5. Had a template stolen a service's credentials anyway, they would reach only what
        # that service needs; nothing answers without a password.
        failures += service_accounts(data)
    finally:
        index.shutdown()
    if failures:
        raise SystemExit("smoke: the sandbox let through:\n  " + "\n  ".join(failures))
    print(f"smoke: every probe blocked in {time.monotonic() - steps.started:.1f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except DumaClientError as error:
        raise SystemExit(f"smoke: {error}")
