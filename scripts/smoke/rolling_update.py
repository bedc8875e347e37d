"""A rolling update under load: serves an app, keeps predictions flowing through nginx from a few
threads while a command rolls a service's tasks (e.g. `docker service update --force
duma_predictor`), and fails if any prediction failed or the command did.

    python scripts/smoke/rolling_update.py --admin http://localhost:3000 \
        --superadmin-password PW -- docker service update --force --quiet duma_predictor
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import requests

sys.path.insert(0, os.path.dirname(__file__))
from scenario import ServedApps  # noqa: E402

THREADS = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("command", nargs="+", help="what rolls the tasks (run without a shell)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        apps = ServedApps(args.admin, args.superadmin_password, work, "rolling")
        job = apps.serve(f"rolling-{uuid.uuid4().hex[:8]}")
    url = f"http://{job['predictor_host']}/predict"
    query = {"query": {"x1": 2.0, "x2": 2.0}}
    # Serving is up: every prediction must succeed from here on.
    requests.post(url, json=query, timeout=10).raise_for_status()

    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    failures = []
    lock = threading.Lock()

    def predict_until_stopped():
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(url, json=query, timeout=10)
                ok = response.status_code == 200
                failure = None if ok else f"{response.status_code}: {response.text[:200]}"
            except requests.RequestException as error:
                ok, failure = False, repr(error)
            with lock:
                counts["ok" if ok else "failed"] += 1
                if failure and len(failures) < 10:
                    failures.append(failure)

    threads = [threading.Thread(target=predict_until_stopped) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    rolled = subprocess.run(args.command, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - began
    # A little more traffic on the new tasks alone.
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    print(f"  rolled in {took:.1f} s; {counts['ok']} predictions answered, {counts['failed']} failed")
    if rolled.returncode != 0:
        sys.exit(f"smoke: {' '.join(args.command)} failed: {rolled.stderr or rolled.stdout}")
    if counts["failed"]:
        sys.exit("smoke: predictions failed during the rolling update:\n  " + "\n  ".join(failures))
    if counts["ok"] < 50:
        sys.exit(f"smoke: only {counts['ok']} predictions during the update: the drill proved nothing")


if __name__ == "__main__":
    main()
