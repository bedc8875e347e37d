"""The fault drill: SIGKILL every kind of process of a running `duma up` at random points of
running train jobs and under bounded prediction load through nginx, and check that the platform
heals by itself, as its supervisor restarts what was killed.

    python scripts/smoke/faults.py --admin http://localhost:13000 --superadmin-password ... \
        --supervisor <pid of duma up> [--rounds 2] [--seed 7]

Each kill lands during a fresh train job (40 trials) of one app developer, while four threads
predict through nginx. After each kill it asserts:
- the train job ends STOPPED within 30 s of the kill, with no trial left RUNNING;
- serving is back (every prediction sent after that moment answered 200 within 1 s) within 2 s of
  a worker or predictor kill, 10 s of a Redis or PostgreSQL kill;
- a deployment with two replicas (one on each inference worker), under load of its own, fails no
  request at all when an inference worker is killed (the requests the dead one had read are
  handed to the live one);
and after the drill: another user's job trains to its end at once, and nothing stored earlier
(users, datasets, jobs, trials and their scores) was lost. Prints a table of the measured times.
"""

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from duma.client import Client  # noqa: E402
from scenario import wait_for, write_dataset  # noqa: E402

TASK = "TABULAR_CLASSIFICATION"
JOB_TRIALS = 40
JOB_END_DEADLINE = 30.0
# Serving must be back this soon after the kill (seconds), by victim.
SERVING_BACK = {"train worker": 2.0, "advisor": 2.0, "inference worker": 2.0, "predictor": 2.0,
                "redis": 10.0, "postgres": 10.0}
# A prediction slower than this counts as an outage, not as an answer.
SLOW = 1.0
# How long after a kill the load is watched for failures.
WATCH = 12.0
QUERY = {"queries": [{"x1": 2.1, "x2": 1.9}, {"x1": -2.2, "x2": -1.8}]}

# Process names (/proc/<pid>/comm, cut at 15 characters) of the supervised processes.
VICTIMS = {
    "train worker": "duma-train-work",
    "advisor": "duma-advisor-wo",
    "inference worker": "duma-inference-",
    "predictor": "duma-predictor",
    "redis": "redis-server",
    "postgres": "postgres",
}


def children(pid):
    """(pid, comm) of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; ppid is the second field after it.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            found.append((int(entry), comm))
    return found


def victim_pids(supervisor, kind):
    return [pid for pid, comm in children(supervisor) if comm == VICTIMS[kind]]


class Load:
    """Bounded prediction load: `threads` clients, each sending one request at a time."""

    def __init__(self, url, threads=4):
        self.url = url
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.records = []  # (sent, done, answered in time, answered)
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                response = session.post(self.url, json=QUERY, timeout=10)
                ok = response.status_code == 200 and len(response.json()["predictions"]) == 2
            except (requests.RequestException, ValueError, KeyError):
                ok = False
            done = time.monotonic()
            with self.lock:
                self.records.append((sent, done, ok and done - sent <= SLOW, ok))
            if not ok:
                time.sleep(0.05)  # a failing stack is not hammered

    def since(self, moment):
        with self.lock:
            return [r for r in self.records if r[0] >= moment or r[1] >= moment]

    def outage_after(self, killed, until):
        """Seconds from the kill until the end of the last failed or slow request of the window
        (0 when none failed); and how many requests failed or were slow."""
        window = [r for r in self.since(killed) if r[0] <= until]
        bad = [r for r in window if not r[2]]
        if not window:
            return None, 0
        return (max(r[1] for r in bad) - killed if bad else 0.0), len(bad)

    def failed_between(self, start, until):
        """Requests sent in the window that got no answer (slow ones count as answered), and
        how many were sent."""
        window = [r for r in self.since(start) if r[0] <= until]
        return len([r for r in window if not r[3]]), len(window)


def login(admin, email, password):
    client = Client(admin.hostname, admin.port, timeout=30)
    client.login(email, password)
    return client


def snapshot(client, apps):
    """What must survive: every ended job of the apps and its completed trials' scores."""
    state = {}
    for app in apps:
        for job in client.get_train_jobs_of_app(app):
            if job["status"] not in ("STOPPED", "ERRORED"):
                continue
            version = job["app_version"]
            trials = client.get_trials_of_train_job(app, version)
            state[(app, version)] = (job["status"], sorted(
                (t["id"], t["score"]) for t in trials if t["status"] == "COMPLETED"))
    return state


def lost(before, after):
    """What of `before` is missing or different in `after`, in a line."""
    changed = [key for key, value in before.items() if after.get(key) != value]
    return ", ".join(f"{app} v{version}: {before[(app, version)][0]} with "
                     f"{len(before[(app, version)][1])} completed trials before, "
                     f"{after.get((app, version))!s:.80} after" for app, version in changed)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("--supervisor", type=int, required=True, help="pid of `duma up`")
    parser.add_argument("--rounds", type=int, default=2, help="kills of each kind")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    admin = urlparse(args.admin)
    print(f"faults: drill against {args.admin} (seed {args.seed}, {args.rounds} kills of each kind)",
          flush=True)
    for kind in VICTIMS:
        if not victim_pids(args.supervisor, kind):
            raise SystemExit(f"faults: no {kind} process under pid {args.supervisor}")

    superadmin = login(admin, "superadmin@rafiki", args.superadmin_password)
    users = []
    for _ in range(2):
        email, password = f"drill-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
        superadmin.create_user(email, password, "APP_DEVELOPER")
        users.append(login(admin, email, password))
    dev, other = users

    with tempfile.TemporaryDirectory(prefix="duma-faults-") as work:
        path = os.path.join(work, "data.csv")
        write_dataset(path, 300, 3)
        train = dev.create_dataset("drill", TASK, path)
        other_train = other.create_dataset("drill", TASK, path)
    model = next(m["id"] for m in dev.get_available_models(TASK) if m["name"] == "LogisticRegression")
    train_args = {"features": ["x1", "x2"], "target": "y"}

    def start_job(client, app, dataset):
        client.create_train_job(app, TASK, dataset["id"], dataset["id"],
                                budget={"MODEL_TRIAL_COUNT": JOB_TRIALS}, models=[model],
                                train_args=train_args)

    def job_status(client, app):
        return client.get_train_job(app)["status"]

    # Something to serve, one replica: the second inference worker is the standby.
    serve_app = f"serve-{uuid.uuid4().hex[:6]}"
    start_job(dev, serve_app, train)
    wait_for("the serving app's training", lambda: job_status(dev, serve_app) == "STOPPED")
    dev.create_inference_job(serve_app)
    job = wait_for("a RUNNING inference job", lambda: (
        lambda j: j if j["status"] == "RUNNING" else None)(dev.get_running_inference_job(serve_app)))
    url = f"http://{job['predictor_host']}/predict"
    wait_for("a first prediction", lambda: requests.post(url, json=QUERY, timeout=5).ok)
    # And a deployment of another app with two replicas: each inference worker serves one.
    replicated = f"replicated-{uuid.uuid4().hex[:6]}"
    dev.create_train_job(replicated, TASK, train["id"], train["id"], budget={"MODEL_TRIAL_COUNT": 2},
                         models=[model], train_args=train_args)
    wait_for("the replicated app's training", lambda: job_status(dev, replicated) == "STOPPED")
    deployment = dev.create_deployment(replicated, replicated, replicas=2)
    wait_for("the replicated deployment serving",
             lambda: dev.get_deployment(replicated)["status"] == "SERVING")
    wait_for("a first prediction of the deployment",
             lambda: requests.post(deployment["url"], json=QUERY, timeout=5).ok)
    replicated_load = Load(deployment["url"], threads=2)
    replicated_load.start()
    load = Load(url)
    load.start()
    time.sleep(1.0)
    outage, bad = load.outage_after(time.monotonic() - 1.0, time.monotonic())
    if bad:
        raise SystemExit(f"faults: predictions fail before any kill ({bad} failed)")

    schedule = [kind for _ in range(args.rounds) for kind in rng.sample(list(VICTIMS), len(VICTIMS))]
    apps = [serve_app]
    rows = []
    failures = []
    for number, kind in enumerate(schedule, 1):
        app = f"drill-{number}-{uuid.uuid4().hex[:6]}"
        apps.append(app)
        before = snapshot(dev, apps[:-1])
        start_job(dev, app, train)
        # A random point of the running job: after its first trial started, up to 1.5 s later.
        wait_for(f"{app}'s first trial", lambda: dev.get_trials_of_train_job(app), interval=0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        pids = victim_pids(args.supervisor, kind)
        if not pids:
            raise SystemExit(f"faults: no {kind} to kill (the supervisor has not restarted it)")
        pid = rng.choice(pids)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)

        # The job ends by itself.
        deadline = killed + JOB_END_DEADLINE
        status, trials = None, []
        while time.monotonic() < deadline:
            try:
                status = job_status(dev, app)
                if status in ("STOPPED", "ERRORED"):
                    trials = dev.get_trials_of_train_job(app)
                    break
            except Exception:  # the admin may be between database connections
                pass
            time.sleep(0.2)
        job_end = time.monotonic() - killed
        stuck = [t for t in trials if t["status"] == "RUNNING"]
        # Serving is judged over the watch window after the kill.
        time.sleep(max(0.0, killed + WATCH - time.monotonic()))
        outage, bad = load.outage_after(killed, killed + WATCH)
        if kind == "inference worker":
            lost_requests, sent = replicated_load.failed_between(killed - 1.0, killed + WATCH)
            print(f"     replicated deployment: {lost_requests} of {sent} requests failed around the kill",
                  flush=True)
            if lost_requests or not sent:
                failures.append(f"kill {number} ({kind}): the two-replica deployment failed "
                                f"{lost_requests} of {sent} requests")
        rows.append((number, kind, job_end if status in ("STOPPED", "ERRORED") else None, status,
                     len(trials), outage, bad))
        print(f"  {number:>2} {kind:<17} job {status or 'still ' + str(job_status(dev, app)):<8} "
              f"after {job_end:5.1f} s ({len(trials)} trials)   serving back after "
              f"{'n/a' if outage is None else f'{outage:4.2f} s'} ({bad} failed or slow)", flush=True)
        if status != "STOPPED":
            failures.append(f"kill {number} ({kind}): the job is {status}, not STOPPED, "
                            f"{JOB_END_DEADLINE:.0f} s after the kill: {trials}")
        if stuck:
            failures.append(f"kill {number} ({kind}): trials left RUNNING: {stuck}")
        if outage is None or outage > SERVING_BACK[kind]:
            failures.append(f"kill {number} ({kind}): serving back only after {outage} s "
                            f"(allowed {SERVING_BACK[kind]} s)")
        missing = lost(before, snapshot(dev, apps[:-1]))
        if missing:
            failures.append(f"kill {number} ({kind}): stored jobs or trials changed: {missing}")
    load.stop()
    replicated_load.stop()
    dev.delete_deployment(replicated)

    # Another user's work is not held up by what happened.
    began = time.monotonic()
    start_job(other, "after-the-drill", other_train)
    wait_for("another user's job after the drill", lambda: job_status(other, "after-the-drill") == "STOPPED",
             deadline=JOB_END_DEADLINE)
    print(f"  another user's {JOB_TRIALS}-trial job after the drill: {time.monotonic() - began:.1f} s",
          flush=True)
    if failures:
        raise SystemExit("faults: " + "\n  ".join(failures) + f"\n(seed {args.seed})")
    print(f"faults: {len(schedule)} kills, every job STOPPED, serving back each time (seed {args.seed})",
          flush=True)


if __name__ == "__main__":
    main()
