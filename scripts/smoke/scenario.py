"""The deploy smoke test: from an empty stack to a prediction through nginx, through the public
APIs only, printing the time of each step.

    python scripts/smoke/scenario.py --admin http://localhost:3000 \
        --superadmin-password ... --prometheus http://localhost:9090 --targets 8

Run by scripts/smoke against `duma up` and against docker compose.
"""

import argparse
import csv
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from urllib.parse import urlparse

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client  # noqa: E402

STEP_DEADLINE = 120.0


class Steps:
    def __init__(self):
        self.started = time.monotonic()

    def run(self, name, action):
        began = time.monotonic()
        result = action()
        print(f"  {name:<44} {time.monotonic() - began:7.2f} s", flush=True)
        return result


def wait_for(what, probe, deadline=STEP_DEADLINE, interval=0.25):
    """Polls `probe` until it returns something truthy (startup and job progress only)."""
    until = time.monotonic() + deadline
    last = None
    while time.monotonic() < until:
        try:
            last = probe()
            if last:
                return last
        except (requests.RequestException, OSError) as error:
            last = error
        time.sleep(interval)
    raise SystemExit(f"smoke: {what} not reached within {deadline:.0f} s (last: {last!r})")


def write_dataset(path, rows, seed):
    """Two well-separated classes on two features."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["x1", "x2", "y"])
        for i in range(rows):
            label = i % 2
            centre = (2.0, 2.0) if label else (-2.0, -2.0)
            out.writerow([f"{centre[0] + rng.gauss(0, 0.7):.4f}", f"{centre[1] + rng.gauss(0, 0.7):.4f}", label])


class ServedApps:
    """An app developer who serves LogisticRegression apps on the two-feature data (for drills
    that need a model answering: fuzzing, load): `serve(app)` trains one trial and waits for its
    inference job to run; `add_key(app)` gives the app a prediction key."""

    def __init__(self, admin_url, superadmin_password, work, prefix):
        admin = urlparse(admin_url)
        self.admin_url = admin_url
        superadmin = Client(admin.hostname, admin.port, timeout=60)
        superadmin.login("superadmin@rafiki", superadmin_password)
        email, password = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
        superadmin.create_user(email, password, "APP_DEVELOPER")
        self.client = Client(admin.hostname, admin.port, timeout=60)
        self.client.login(email, password)
        self.token = requests.post(f"{admin_url}/tokens", json={"email": email, "password": password},
                                   timeout=30).json()["token"]
        train_csv, val_csv = os.path.join(work, "train.csv"), os.path.join(work, "val.csv")
        write_dataset(train_csv, 200, 1)
        write_dataset(val_csv, 50, 2)
        task = "TABULAR_CLASSIFICATION"
        self.train = self.client.create_dataset(f"{prefix}-train", task, train_csv)
        self.val = self.client.create_dataset(f"{prefix}-val", task, val_csv)
        self.model = [m for m in self.client.get_available_models(task) if m["name"] == "LogisticRegression"][0]
        self.task = task

    def serve(self, app):
        """Trains `app` (one trial) and serves it; returns its RUNNING inference job."""
        client = self.client
        client.create_train_job(app, self.task, self.train["id"], self.val["id"],
                                budget={"MODEL_TRIAL_COUNT": 1}, models=[self.model["id"]],
                                train_args={"features": ["x1", "x2"], "target": "y"})
        wait_for("training", lambda: client.get_train_job(app)["status"] == "STOPPED")
        client.create_inference_job(app)
        return wait_for("serving", lambda: (lambda j: j if j["status"] == "RUNNING" else None)(
            client.get_running_inference_job(app)))

    def add_key(self, app):
        """A new prediction key of `app` (which then requires one)."""
        response = requests.post(f"{self.admin_url}/apps/{app}/prediction_keys", json={},
                                 headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        response.raise_for_status()
        return response.json()["key"]


def dashboard_signs_in(args):
    """The admin (binary or image) serves the dashboard: `/` sends a browser to it, the sign-in
    form sets the session cookie, a page and its script load with it."""
    browser = requests.Session()
    home = browser.get(f"{args.admin}/", headers={"Accept": "text/html"}, timeout=30)
    if "/ui/sign-in" not in home.url:
        raise SystemExit(f"smoke: a browser opening / lands on {home.url}, not the sign-in page")
    signed_in = browser.post(f"{args.admin}/ui/sign-in", timeout=30, data={
        "email": "superadmin@rafiki", "password": args.superadmin_password, "next": "/ui/models"})
    if not signed_in.url.endswith("/ui/models") or "csrf-token" not in signed_in.text:
        raise SystemExit(f"smoke: signing in to the dashboard ended at {signed_in.url} ({signed_in.status_code})")
    script = browser.get(f"{args.admin}/ui/static/dashboard.js", timeout=30)
    if script.status_code != 200 or "pages.models" not in script.text:
        raise SystemExit(f"smoke: the dashboard's script did not load ({script.status_code})")


def admin_clients(args, steps, title):
    """Waits for the admin; returns a factory of clients (sessions) for it."""
    print(title, flush=True)
    steps.run("admin answers /health", lambda: wait_for(
        "admin health", lambda: requests.get(f"{args.admin}/health", timeout=5).ok))
    admin = urlparse(args.admin)
    return lambda: Client(admin.hostname, admin.port, timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True, help="admin URL, e.g. http://localhost:3000")
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("--prometheus", required=True, help="Prometheus URL")
    parser.add_argument("--targets", type=int, required=True, help="scrape targets expected up")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--state", help="write the user and app made here to this JSON file")
    parser.add_argument("--verify", help="only check that the app recorded in this file survived")
    args = parser.parse_args()
    if args.verify:
        verify(args)
        return

    steps = Steps()
    new_client = admin_clients(args, steps, f"smoke: scenario against {args.admin}")
    superadmin = new_client()
    steps.run("log in as superadmin", lambda: superadmin.login("superadmin@rafiki", args.superadmin_password))
    steps.run("the dashboard signs in a browser", lambda: dashboard_signs_in(args))
    email = f"dev-{uuid.uuid4().hex[:8]}@example.com"
    password = uuid.uuid4().hex
    steps.run("create an app developer", lambda: superadmin.create_user(email, password, "APP_DEVELOPER"))
    client = new_client()
    steps.run("log in as the app developer", lambda: client.login(email, password))

    task = "TABULAR_CLASSIFICATION"
    with tempfile.TemporaryDirectory(prefix="duma-smoke-") as work:
        train_csv, val_csv = os.path.join(work, "train.csv"), os.path.join(work, "val.csv")
        write_dataset(train_csv, 400, 1)
        write_dataset(val_csv, 100, 2)
        train = steps.run("upload the train CSV", lambda: client.create_dataset("smoke-train", task, train_csv))
        val = steps.run("upload the validation CSV", lambda: client.create_dataset("smoke-val", task, val_csv))

    models = [m for m in client.get_available_models(task) if m["name"] == "LogisticRegression"]
    if not models:
        raise SystemExit("smoke: the built-in LogisticRegression model is not available")
    app = f"smoke-{uuid.uuid4().hex[:8]}"
    steps.run("create a train job", lambda: client.create_train_job(
        app, task, train["id"], val["id"],
        budget={"MODEL_TRIAL_COUNT": args.trials},
        models=[models[0]["id"]],
        train_args={"features": ["x1", "x2"], "target": "y"},
    ))

    def train_job_done():
        job = client.get_train_job(app)
        if job["status"] == "ERRORED":
            raise SystemExit(f"smoke: the train job ERRORED: {job}")
        return job if job["status"] == "STOPPED" else None

    steps.run(f"train {args.trials} trials", lambda: wait_for("the train job's end", train_job_done))
    trials = client.get_trials_of_train_job(app)
    completed = [t for t in trials if t["status"] == "COMPLETED"]
    if len(completed) != args.trials:
        raise SystemExit(f"smoke: expected {args.trials} completed trials, got {trials}")
    best = max(t["score"] for t in completed)
    print(f"    best validation score {best:.3f}", flush=True)
    if best < 0.9:
        raise SystemExit(f"smoke: the best score {best} is too low for separable data")

    steps.run("create an inference job", lambda: client.create_inference_job(app))

    def serving():
        job = client.get_running_inference_job(app)
        return job if job["status"] == "RUNNING" else None

    job = steps.run("inference job RUNNING", lambda: wait_for("a RUNNING inference job", serving))
    host = job["predictor_host"]
    print(f"    predictor_host {host}", flush=True)
    # A port of nginx of the job's own (admin.inference_job_ports): code that splits it works.
    hostname, _, port = host.partition(":")
    if not (hostname and port.isdigit()):
        raise SystemExit(f"smoke: predictor_host {host!r} is not host:port")

    def predict():
        predictions = client.predict(app, queries=[{"x1": 2.1, "x2": 1.9}, {"x1": -2.2, "x2": -1.8}])
        return predictions

    predictions = steps.run("predict through nginx", lambda: wait_for("a prediction", predict))
    positive, negative = predictions
    if not (len(positive) == 2 and positive[1] > 0.5 and negative[0] > 0.5):
        raise SystemExit(f"smoke: wrong predictions {predictions}")
    if not all(math.isclose(sum(p), 1.0, abs_tol=1e-6) for p in predictions):
        raise SystemExit(f"smoke: predictions are not probability vectors: {predictions}")
    print(f"    predictions {predictions}", flush=True)

    def all_targets_up():
        body = requests.get(f"{args.prometheus}/api/v1/targets", timeout=5).json()
        active = body["data"]["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        return (len(up), len(active)) if len(up) == len(active) == args.targets else None

    up, total = steps.run(f"Prometheus: {args.targets} targets up", lambda: wait_for(
        "every Prometheus target up", all_targets_up))

    def alert_rules_loaded():
        body = requests.get(f"{args.prometheus}/api/v1/rules", timeout=5).json()
        names = {r["name"] for g in body["data"]["groups"] for r in g["rules"]}
        return names if "DumaServiceDown" in names else None

    rules = steps.run("Prometheus: alert rules loaded", lambda: wait_for("the alert rules", alert_rules_loaded))
    print(f"    {len(rules)} alert rules", flush=True)

    steps.run("stop the inference job", lambda: client.stop_inference_job(app))

    def port_released():
        # Predictors hear of the stop by an event: until then the job may still answer.
        gone = requests.post(f"http://{hostname}:{int(port)}/predict", json={"query": {"x1": 1, "x2": 1}}, timeout=10)
        if gone.status_code not in (200, 404, 503):
            raise SystemExit(f"smoke: a stopped job's port answered {gone.status_code}: {gone.text}")
        return gone.status_code == 404

    steps.run("the stopped job's port answers 404", lambda: wait_for(
        "a 404 from the stopped job's port", port_released, deadline=10))
    if args.state:
        with open(args.state, "w") as f:
            json.dump({"email": email, "password": password, "app": app, "trials": args.trials}, f)
    print(f"smoke: passed in {time.monotonic() - steps.started:.1f} s", flush=True)


def verify(args):
    """After a restart: the user, the train job, its trials and the stopped inference job are
    all still there."""
    with open(args.verify) as f:
        state = json.load(f)
    steps = Steps()
    client = admin_clients(args, steps, f"smoke: checking that {state['app']} survived the restart")()
    steps.run("log in as the same app developer", lambda: client.login(state["email"], state["password"]))
    job = steps.run("read the train job", lambda: client.get_train_job(state["app"]))
    trials = client.get_trials_of_train_job(state["app"])
    completed = [t for t in trials if t["status"] == "COMPLETED"]
    if job["status"] != "STOPPED" or len(completed) != state["trials"]:
        raise SystemExit(f"smoke: the train job changed across the restart: {job} {trials}")
    jobs = client.get_inference_jobs_of_app(state["app"])
    if [j["status"] for j in jobs] != ["STOPPED"]:
        raise SystemExit(f"smoke: the inference job changed across the restart: {jobs}")
    print(f"smoke: everything survived ({len(completed)} trials)", flush=True)


if __name__ == "__main__":
    main()
