"""The `duma` command in a terminal, against a running Duma: a pseudo-terminal session (pexpect)
logs in at a password prompt, uploads a dataset (checksum shown), trains with `--watch` (the live
view) and detaches another job with Ctrl-C, deploys, predicts a CSV file, and checks the
screens, the output files, `--output json`, and that bad inputs print one clear line and exit
non-zero.

    .venv/bin/python scripts/smoke/cli.py --duma target/debug/duma --admin http://localhost:13000 \
        --superadmin-password ...

Run by scripts/smoke/run local.
"""

import argparse
import csv
import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import tempfile
import uuid

import pexpect
import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client  # noqa: E402

from checks import Checks  # noqa: E402

TASK = "TABULAR_CLASSIFICATION"
DEADLINE = 300


check, step, _ = Checks("cli smoke", deadline=DEADLINE).tools()


class Terminal:
    """Runs `duma` commands in a pseudo-terminal (what a person at a shell gets) or as plain
    processes (what a script gets)."""

    def __init__(self, duma, env, work):
        self.duma, self.env, self.work = duma, env, work

    def spawn(self, *args):
        return pexpect.spawn(self.duma, list(args), env=self.env, cwd=self.work, encoding="utf-8",
                             timeout=DEADLINE, dimensions=(50, 200))

    def finished(self, child, what):
        child.expect(pexpect.EOF)
        child.close()
        check(child.exitstatus == 0, f"{what} exited {child.exitstatus}: {child.before[-2000:]}")
        return child.before

    def run(self, *args):
        return subprocess.run([self.duma, *args], env=self.env, cwd=self.work, capture_output=True,
                              text=True, timeout=DEADLINE)

    def refused(self, what, code, needle, *args):
        """A bad input: exit `code`, and one line on standard error that says why."""
        done = self.run(*args)
        lines = done.stderr.strip().splitlines()
        check(done.returncode == code, f"{what}: exit {done.returncode}, wanted {code}: {done.stderr}")
        check(len(lines) == 1 and lines[0].startswith("duma: ") and needle in lines[0],
              f"{what}: wanted one line naming {needle!r}, got {done.stderr!r}")
        return lines[0]


def write_csv(path, rows, seed, target=True):
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["x1", "x2", "y"] if target else ["x1", "x2"])
        for i in range(rows):
            label = i % 2
            centre = 2.0 if label else -2.0
            row = [f"{centre + rng.gauss(0, 0.7):.4f}", f"{centre + rng.gauss(0, 0.7):.4f}"]
            out.writerow(row + [label] if target else row)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duma", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="duma-cli-")
    config = os.path.join(work, "config")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": work, "XDG_CONFIG_HOME": config,
           "DUMA_ADMIN": args.admin, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    term = Terminal(os.path.abspath(args.duma), env, work)

    host, port = args.admin.split("://")[1].split(":")
    superadmin = Client(host, int(port), timeout=60)
    superadmin.login("superadmin@rafiki", args.superadmin_password)
    email, password = f"cli-{uuid.uuid4().hex[:8]}@duma.test", uuid.uuid4().hex
    superadmin.create_user(email, password, "APP_DEVELOPER")
    for name, rows, seed, target in (("train.csv", 200, 1, True), ("val.csv", 100, 2, True),
                                     ("rows.csv", 40, 3, False)):
        write_csv(os.path.join(work, name), rows, seed, target)

    def login():
        child = term.spawn("login", "--email", email)
        child.expect("Password")
        child.sendline(password)
        child.expect("Logged in to ")
        term.finished(child, "login")
        saved = os.path.join(config, "duma", "login.json")
        mode = stat.S_IMODE(os.stat(saved).st_mode)
        check(mode == 0o600, f"the token file has mode {oct(mode)}")
        check(password not in open(saved).read(), "the password was saved")
    step("login at a password prompt (token saved 0600)", login)
    whoami = term.run("whoami", "--output", "json")
    check(json.loads(whoami.stdout)["email"] == email, whoami.stdout)

    def upload():
        child = term.spawn("datasets", "upload", "train.csv", "--task", TASK)
        child.expect(r"sha256 ([0-9a-f]{64}) \(matches the file\)")
        shown = child.match.group(1)
        term.finished(child, "datasets upload")
        expected = hashlib.sha256(open(os.path.join(work, "train.csv"), "rb").read()).hexdigest()
        check(shown == expected, f"checksum {shown} != {expected}")
    step("datasets upload (progress, checksum)", upload)
    listed = json.loads(term.run("datasets", "ls", "--output", "json").stdout)
    check(any(d["name"] == "train.csv" for d in listed), listed)

    app = f"cli-{uuid.uuid4().hex[:6]}"

    def watch():
        child = term.spawn("train", app, "--task", TASK, "--train", "train.csv", "--val", "val.csv",
                           "--models", "LogisticRegression", "--trials", "4", "--target", "y", "--watch")
        child.expect("TRIAL")  # the live table
        child.expect(rf"{app} v1 STOPPED: best score (\d\.\d+) by LogisticRegression")
        best = float(child.match.group(1))
        screen = term.finished(child, "train --watch")
        check(best > 0.9, f"best score {best}")
        return screen
    step("train --watch (live view until STOPPED)", watch)

    detached = f"{app}-long"

    def detach():
        child = term.spawn("train", detached, "--task", TASK, "--train", "train.csv", "--val", "val.csv",
                           "--models", "KNeighborsClassifier", "--trials", "500", "--target", "y", "--watch")
        child.expect("Ctrl-C detaches")
        child.sendintr()
        child.expect("Detached: ")
        term.finished(child, "train --watch, Ctrl-C")
        job = json.loads(term.run("jobs", "show", detached, "--output", "json").stdout)["job"]
        check(job["status"] in ("STARTED", "RUNNING"), f"Ctrl-C stopped the job: {job['status']}")
        stopped = term.run("jobs", "stop", detached)
        check(stopped.returncode == 0 and "STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr)
    step("train --watch, Ctrl-C detaches (the job runs on)", detach)

    def deploy():
        child = term.spawn("deploy", app)
        child.expect(r"is RUNNING at http://\S+/predict")
        term.finished(child, "deploy")
    step("deploy (until RUNNING)", deploy)

    def predict():
        child = term.spawn("predict", app, "--file", "rows.csv", "--batch", "16")
        child.expect("Wrote 40 predictions to ")
        term.finished(child, "predict --file")
        with open(os.path.join(work, "rows.predictions.csv")) as f:
            rows = list(csv.DictReader(f))
        check(len(rows) == 40 and list(rows[0]) == ["x1", "x2", "prediction"], rows[:2])
        for row in rows:
            probabilities = json.loads(row["prediction"])
            wanted = 1 if float(row["x1"]) + float(row["x2"]) > 0 else 0
            check(probabilities[wanted] > 0.5, f"row {row}")
    step("predict --file rows.csv (written beside it)", predict)
    one = json.loads(term.run("predict", app, "--query", '{"x1": 2, "x2": 2}', "--output", "json").stdout)
    check(one[1] > 0.5, one)

    trials = json.loads(term.run("trials", app, "--output", "json").stdout)
    check(len(trials) == 4, trials)
    logs = term.run("logs", trials[0]["id"])
    check(logs.returncode == 0, logs.stderr)
    jobs = json.loads(term.run("jobs", "ls", "--output", "json").stdout)
    check({app, detached} <= {j["app"] for j in jobs}, jobs)
    check("_duma" in term.run("completions", "bash").stdout, "bash completions")

    def refusals():
        term.refused("a missing file", 2, "missing.csv", "datasets", "upload", "missing.csv", "--task", TASK)
        term.refused("an unknown app", 1, "nope-app", "jobs", "show", "nope-app")
        term.refused("a model of another task", 2, "IMAGE_CLASSIFICATION", "train", "x", "--task",
                     "IMAGE_CLASSIFICATION", "--train", "train.csv", "--val", "val.csv",
                     "--models", "LogisticRegression")
        term.refused("an unknown task", 1, "Error: ", "train", "x", "--task", "NOT_A_TASK", "--train",
                     "train.csv", "--val", "val.csv")
        term.refused("not JSON", 2, "--query", "predict", app, "--query", "{nope")
        usage = term.run("train")  # clap's own usage message
        check(usage.returncode == 2 and usage.stderr.startswith("error: "), usage.stderr)
        saved = os.path.join(config, "duma", "login.json")
        original = open(saved).read()
        login = json.loads(original)
        login["token"] = login["token"][:-4] + "AAAA"
        json.dump(login, open(saved, "w"))
        term.refused("an expired or forged token", 1, "duma login", "whoami")
        with open(saved, "w") as f:
            f.write(original)
    step("bad inputs: one line each, exit 1 or 2", refusals)

    undeploy = term.run("undeploy", app)
    check(undeploy.returncode == 0, undeploy.stderr)

    deployment = f"{app}-svc"

    def deployments():
        child = term.spawn("deploy", app, "--name", deployment)
        child.expect(rf"Deployment {deployment} serves {app} \(v1 100%\) at (http://\S+)")
        url = child.match.group(1)
        term.finished(child, "deploy --name")
        answered = requests.post(url, json={"query": {"x1": 2, "x2": 2}}, timeout=30)
        check(answered.status_code == 200 and answered.headers.get("X-Duma-Version") == "1",
              f"{answered.status_code} {answered.headers} {answered.text}")
        trained = term.run("train", app, "--task", TASK, "--train", "train.csv", "--val", "val.csv",
                           "--models", "LogisticRegression", "--trials", "1", "--target", "y", "--watch")
        check(trained.returncode == 0, trained.stdout + trained.stderr)
        child = term.spawn("deploy", app, "--name", deployment, "--canary", "20")
        child.expect(rf"Deployment {deployment} serves {app} \(v1 80%, v2 20%\)")
        term.finished(child, "deploy --name --canary")
        deleted = term.run("undeploy", "--name", deployment)
        check(deleted.returncode == 0, deleted.stderr)
        gone = requests.post(url, json={"query": {"x1": 2, "x2": 2}}, timeout=30)
        check(gone.status_code == 404, f"a deleted deployment answered {gone.status_code}")
    step("deploy --name (a deployment), then a 20% canary of v2", deployments)
    logout = term.run("logout")
    check(logout.returncode == 0 and not os.path.exists(os.path.join(config, "duma", "login.json")), "logout")
    term.refused("after logout", 1, "duma login", "jobs", "ls")
    print("cli smoke: every command behaved")


if __name__ == "__main__":
    main()
