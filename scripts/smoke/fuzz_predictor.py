"""Property-based fuzzing of the predictor through nginx, from its OpenAPI document
(predictor/openapi.json), with Schemathesis: no response may be a 5xx other than the documented
503/504, and every status and body must be the documented ones.

It first serves two apps — one open, one with a prediction key — so the fuzzer reaches real
models (its bodies are mostly queries no model accepts, which must be 400s), the key check
(random keys: 401) and made-up jobs (404).

    python scripts/smoke/fuzz_predictor.py --admin http://localhost:13000 \
        --predictor http://localhost:18080 --superadmin-password ... [--examples 100] [--seed N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import urlparse

import requests

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client  # noqa: E402
from scenario import Steps, wait_for, write_dataset  # noqa: E402

TASK = "TABULAR_CLASSIFICATION"
DOCUMENT = os.path.join(os.path.dirname(__file__), "..", "..", "predictor", "openapi.json")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--predictor", required=True, help="nginx's base URL")
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()

    steps = Steps()
    print(f"smoke: fuzzing the predictor at {args.predictor}", flush=True)
    admin = urlparse(args.admin)
    superadmin = Client(admin.hostname, admin.port, timeout=60)
    superadmin.login("superadmin@rafiki", args.superadmin_password)
    email, password = f"fuzz-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
    superadmin.create_user(email, password, "APP_DEVELOPER")
    client = Client(admin.hostname, admin.port, timeout=60)
    client.login(email, password)
    token = requests.post(f"{args.admin}/tokens", json={"email": email, "password": password},
                          timeout=30).json()["token"]

    with tempfile.TemporaryDirectory(prefix="duma-fuzz-") as work:
        train_csv, val_csv = os.path.join(work, "train.csv"), os.path.join(work, "val.csv")
        write_dataset(train_csv, 200, 1)
        write_dataset(val_csv, 50, 2)
        train = client.create_dataset("fuzz-train", TASK, train_csv)
        val = client.create_dataset("fuzz-val", TASK, val_csv)
        model = [m for m in client.get_available_models(TASK) if m["name"] == "LogisticRegression"][0]
        jobs = {}
        for kind in ("open", "keyed"):
            app = f"fuzz-{kind}-{uuid.uuid4().hex[:6]}"
            client.create_train_job(app, TASK, train["id"], val["id"], budget={"MODEL_TRIAL_COUNT": 1},
                                    models=[model["id"]], train_args={"features": ["x1", "x2"], "target": "y"})
            steps.run(f"train the {kind} app", lambda: wait_for(
                "training", lambda: client.get_train_job(app)["status"] == "STOPPED"))
            client.create_inference_job(app)
            job = steps.run(f"serve the {kind} app", lambda: wait_for("serving", lambda: (
                lambda j: j if j["status"] == "RUNNING" else None)(client.get_running_inference_job(app))))
            if kind == "keyed":
                requests.post(f"{args.admin}/apps/{app}/prediction_keys", json={},
                              headers={"Authorization": f"Bearer {token}"}, timeout=30).raise_for_status()
            jobs[kind] = (app, job["id"])

        document = json.load(open(DOCUMENT))
        parameter = document["paths"]["/inference_jobs/{inference_job_id}/predict"]["post"]["parameters"][0]
        parameter["schema"] = {"type": "string",
                               "enum": [jobs["open"][1], jobs["keyed"][1], str(uuid.uuid4()), "not-a-job"]}
        # Queries these models accept, so the fuzzer's explicit-examples phase gets answers too.
        post = document["paths"]["/inference_jobs/{inference_job_id}/predict"]["post"]
        post["requestBody"]["content"]["application/json"]["examples"] = {
            "one": {"value": {"query": {"x1": 2.1, "x2": 1.9}}},
            "many": {"value": {"queries": [{"x1": 2.1, "x2": 1.9}, {"x1": -2.0, "x2": -1.5}]}},
        }
        schema = os.path.join(work, "predictor-openapi.json")
        json.dump(document, open(schema, "w"))
        command = [os.path.join(os.path.dirname(sys.executable), "st"), "run", schema, "--url", args.predictor,
                   "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
                   "--max-examples", str(args.examples), "--workers", "2"]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        done = steps.run("Schemathesis", lambda: subprocess.run(command, capture_output=True, text=True,
                                                                timeout=600))
        summary = [line for line in done.stdout.splitlines() if "passed" in line or "failed" in line]
        print("    " + (summary[-1].strip(" =") if summary else "(no summary)"), flush=True)
        if done.returncode != 0:
            print(done.stdout[-6000:], file=sys.stderr)
            raise SystemExit("smoke: the predictor fuzzing found failures")

        # The models still serve well-formed queries after the fuzzing.
        for kind, (app, _) in jobs.items():
            if kind == "open":
                prediction = client.predict(app, query={"x1": 2.1, "x2": 1.9})
                if len(prediction) != 2:
                    raise SystemExit(f"smoke: a wrong prediction after fuzzing: {prediction}")
            client.stop_inference_job(app)
    print(f"smoke: predictor fuzzing passed in {time.monotonic() - steps.started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
