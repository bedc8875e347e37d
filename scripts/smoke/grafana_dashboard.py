"""Grafana cannot run here, so this checks its dashboard (deploy/grafana/dashboards/duma.json)
against a running Duma instead: every panel query must parse (`promtool check rules` on the
queries as recording rules) and every `duma_*` metric it names must be one the services really
export (Prometheus's list of scraped metric names). It first makes the traffic that creates the
labelled series: a deployment with a shadow, queried a few times.

    .venv/bin/python scripts/smoke/grafana_dashboard.py --admin http://localhost:13000 \
        --prometheus http://localhost:19090 --superadmin-password ...

Run by scripts/smoke/run local.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client  # noqa: E402

from checks import Checks  # noqa: E402

DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "grafana", "dashboards", "duma.json")
DEADLINE = 120
TASK = "TABULAR_CLASSIFICATION"


check, _, wait_for = Checks("grafana dashboard", deadline=DEADLINE).tools()


def queries(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def make_traffic(admin_url, password, work):
    """A deployment of two versions, the second as a shadow, queried a few times."""
    host, port = admin_url.split("://")[1].split(":")
    client = Client(host, int(port), timeout=60)
    client.login("superadmin@rafiki", password)
    app = f"grafana-{uuid.uuid4().hex[:6]}"
    rng = random.Random(7)
    path = os.path.join(work, "data.csv")
    with open(path, "w") as f:
        f.write("x1,x2,y\n")
        for i in range(120):
            centre = 2.0 if i % 2 else -2.0
            f.write(f"{centre + rng.gauss(0, .7):.3f},{centre + rng.gauss(0, .7):.3f},{i % 2}\n")
    dataset = client.create_dataset(f"{app}-data", TASK, path)["id"]
    # A Python template: its upload has the train workers build its environment (counted).
    template = os.path.join(os.path.dirname(__file__), "..", "..", "python", "tests", "templates",
                            "rafiki_centroid.py")
    client.create_model(f"{app}-centroid", TASK, template, "RafikiCentroid")
    model = next(m["id"] for m in client.get_available_models(TASK) if m["name"] == "LogisticRegression")
    for _ in range(2):
        client.create_train_job(app, TASK, dataset, dataset, {"MODEL_TRIAL_COUNT": 1}, models=[model],
                                train_args={"target": "y"})
        wait_for("training", lambda: client.get_train_job(app)["status"] == "STOPPED")
    headers = {"Authorization": f"Bearer {login_token(admin_url, password)}"}
    name = f"{app}-live"
    created = requests.post(f"{admin_url}/deployments", headers=headers, timeout=60,
                            json={"name": name, "app": app, "app_version": 1})
    check(created.status_code == 200, created.text)
    wait_for("the deployment", lambda: requests.get(f"{admin_url}/deployments/{name}", headers=headers,
                                                    timeout=60).json()["status"] == "SERVING")
    shadowed = requests.patch(f"{admin_url}/deployments/{name}", headers=headers, timeout=60,
                              json={"shadow": 2})
    check(shadowed.status_code == 200, shadowed.text)

    def with_shadow():
        body = requests.get(f"{admin_url}/deployments/{name}", headers=headers, timeout=60).json()
        return body if body["status"] == "SERVING" and any(r["shadow"] for r in body["routes"]) else None
    url = wait_for("the shadow", with_shadow)["url"]
    for _ in range(5):
        answer = requests.post(url, json={"query": {"x1": 2, "x2": 2}}, timeout=30)
        check(answer.status_code == 200, answer.text)
    return lambda: requests.delete(f"{admin_url}/deployments/{name}", headers=headers, timeout=60)


def login_token(admin_url, password):
    body = {"email": "superadmin@rafiki", "password": password}
    return requests.post(f"{admin_url}/tokens", json=body, timeout=60).json()["token"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    dashboard = json.load(open(DASHBOARD))
    exprs = list(queries(dashboard))
    check(exprs, "the dashboard has no queries")

    with tempfile.TemporaryDirectory(prefix="duma-grafana-") as work:
        rules = os.path.join(work, "queries.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for i, (_, expr) in enumerate(exprs):
                f.write(f"      - record: dashboard_query_{i}\n        expr: {json.dumps(expr)}\n")
        parsed = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True,
                                timeout=60)
        check(parsed.returncode == 0, f"a panel query does not parse:\n{parsed.stdout}{parsed.stderr}")
        print(f"  {len(exprs)} panel queries parse (promtool)", flush=True)

        delete = make_traffic(args.admin, args.superadmin_password, work)
        named = {name for _, expr in exprs for name in re.findall(r"\b(?:duma_[a-z0-9_]+|up)\b", expr)}
        last_missing = []

        def probe():
            nonlocal last_missing
            names = set(requests.get(f"{args.prometheus}/api/v1/label/__name__/values", timeout=10)
                        .json()["data"])
            last_missing = sorted(named - names)
            return not last_missing
        until = time.monotonic() + 60
        while not probe():
            if time.monotonic() > until:  # scraped every few seconds
                raise SystemExit(f"grafana dashboard: panels name metrics no service exports: {last_missing}")
            time.sleep(1)
        delete()
        print(f"  the {len(named)} metrics the panels name are exported and scraped", flush=True)
    print("grafana dashboard: every panel query checked")


if __name__ == "__main__":
    main()
