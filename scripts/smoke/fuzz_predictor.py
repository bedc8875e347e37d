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


sys.path.insert(0, os.path.dirname(__file__))
from scenario import ServedApps, Steps  # noqa: E402

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
    with tempfile.TemporaryDirectory(prefix="duma-fuzz-") as work:
        apps = ServedApps(args.admin, args.superadmin_password, work, "fuzz")
        jobs = {}
        for kind in ("open", "keyed"):
            app = f"fuzz-{kind}-{uuid.uuid4().hex[:6]}"
            job = steps.run(f"train and serve the {kind} app", lambda: apps.serve(app))
            if kind == "keyed":
                apps.add_key(app)
            jobs[kind] = (app, job["id"])
        client = apps.client

        document = json.load(open(DOCUMENT))
        parameter = document["paths"]["/inference_jobs/{inference_job_id}/predict"]["post"]["parameters"][0]
        parameter["schema"] = {"type": "string",
                               "enum": [jobs["open"][1], jobs["keyed"][1], str(uuid.uuid4()), "not-a-job"]}
        # Queries these models accept, so the fuzzer's explicit-examples phase gets answers too.
        predict_body = document["components"]["requestBodies"]["Predict"]
        predict_body["content"]["application/json"]["examples"] = {
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
