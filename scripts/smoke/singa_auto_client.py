"""SINGA-Auto's own client, unchanged, against a running Duma: every call of
`singa_auto.client.Client` (the `singa-auto` package from the Python registry, Rafiki's
successor), from login to stopping every job, with a SINGA-Auto-style template trained, served and
queried the way SINGA-Auto's docs say (`http://{predictor_host}/predict`).

    .venv-singa-auto/bin/python scripts/smoke/singa_auto_client.py --admin-port 13000 \
        --superadmin-password ...

scripts/setup makes `.venv-singa-auto` (the client without its heavy dependencies); run by
scripts/smoke/run local. Two calls cannot work by design and are checked to fail cleanly:
`get_trial_parameters`/`load_trial_model` unpickle what the server sends (Duma never pickles).
The checkpoint flow (`create_model(model_preload_file_path=...)`, then
`create_inference_job_by_checkpoint`) serves the best trial's parameters, downloaded raw, and must
answer exactly as the trained job does.
"""

import argparse
import os
import random
import sys
import tempfile
import uuid

import requests
from singa_auto.client import Client
from singa_auto.error_code import SingaAutoConnectionError

from checks import Checks

TASK = "TABULAR_CLASSIFICATION"
DEADLINE = 300.0

TEMPLATE = '''
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from singa_auto.model import BaseModel, FloatKnob, utils


class SingaAutoLogReg(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"C": FloatKnob(0.01, 10.0, is_exp=True)}

    def __init__(self, **knobs):
        self._c = knobs["C"]
        self._clf = None

    def train(self, dataset_path, shared_params=None, **train_args):
        table = pd.read_csv(dataset_path)
        print("training on", len(table), "rows")
        utils.logger.log("fitting", C=self._c)
        self._clf = LogisticRegression(C=self._c).fit(table[["x1", "x2"]], table["y"])

    def evaluate(self, dataset_path, **kwargs):
        table = pd.read_csv(dataset_path)
        return float(self._clf.score(table[["x1", "x2"]], table["y"]))

    def predict(self, queries):
        frame = pd.DataFrame([q for q in queries])[["x1", "x2"]]
        return [p.tolist() for p in self._clf.predict_proba(frame)]

    def dump_parameters(self):
        return {"coef": self._clf.coef_.tolist(), "intercept": self._clf.intercept_.tolist(),
                "classes": self._clf.classes_.tolist()}

    def load_parameters(self, params):
        self._clf = LogisticRegression(C=self._c)
        self._clf.coef_ = np.array(params["coef"])
        self._clf.intercept_ = np.array(params["intercept"])
        self._clf.classes_ = np.array(params["classes"])
'''


check, step, wait_for = Checks("singa-auto client", deadline=DEADLINE, width=46).tools()


def created(what, body):
    """SINGA-Auto's client hands back a 400's body as if it were the result: check for an id."""
    check(isinstance(body, dict) and "id" in body, f"{what} refused: {body}")
    return body


def fails(what, action):
    """The call must raise the client's own error (a clear refusal, not a crash)."""
    try:
        action()
    except (SingaAutoConnectionError, Exception) as error:  # noqa: B014 - either is a refusal
        return str(error)
    raise SystemExit(f"singa-auto client: {what} did not fail")


def write_csv(path, rows, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("x1,x2,y\n")
        for i in range(rows):
            label = i % 2
            centre = -1.5 if label == 0 else 1.5
            f.write(f"{centre + rng.gauss(0, 1):.4f},{centre + rng.gauss(0, 1):.4f},{label}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-host", default="localhost")
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="duma-singa-auto-")
    run = uuid.uuid4().hex[:8]

    admin = Client(admin_host=args.admin_host, admin_port=args.admin_port)
    me = step("login (superadmin)", lambda: admin.login("superadmin@rafiki", args.superadmin_password))
    check(me["user_type"] == "SUPERADMIN", me)
    check(admin.get_current_user() == me, "get_current_user")
    password = uuid.uuid4().hex
    dev_email = f"sa-dev-{run}@duma.test"
    step("create_user (MODEL_DEVELOPER)", lambda: admin.create_user(dev_email, password, "MODEL_DEVELOPER"))
    victim = f"sa-victim-{run}@duma.test"
    step("create_user (APP_DEVELOPER)", lambda: admin.create_user(victim, password, "APP_DEVELOPER"))
    users = step("get_users", admin.get_users)
    check({dev_email, victim} <= {u["email"] for u in users}, "get_users lists the new users")
    banned = step("ban_user", lambda: admin.ban_user(victim))
    check(banned["email"] == victim, banned)
    check("banned" in fails("a banned user's login", lambda: Client(
        admin_host=args.admin_host, admin_port=args.admin_port).login(victim, password)).lower(),
        "a banned user cannot log in")

    dev = Client(admin_host=args.admin_host, admin_port=args.admin_port)
    step("login (model developer)", lambda: dev.login(dev_email, password))
    train_csv, val_csv = os.path.join(work, "train.csv"), os.path.join(work, "val.csv")
    write_csv(train_csv, 200, 1)
    write_csv(val_csv, 100, 2)
    train = created("create_dataset", step("create_dataset (train)", lambda: dev.create_dataset(
        f"train-{run}", TASK, train_csv)))
    val = created("create_dataset", step("create_dataset (val)", lambda: dev.create_dataset(
        f"val-{run}", TASK, val_csv)))
    datasets = step("get_datasets", lambda: dev.get_datasets(task=TASK))
    check({train["id"], val["id"]} <= {d["id"] for d in datasets}, "get_datasets lists both")

    template = os.path.join(work, "sa_logreg.py")
    with open(template, "w") as f:
        f.write(TEMPLATE)
    model = created("create_model", step("create_model", lambda: dev.create_model(
        f"sa-logreg-{run}", TASK, template, "SingaAutoLogReg",
        model_description="logistic regression on two features")))
    fetched = step("get_model", lambda: dev.get_model(model["id"]))
    check(fetched["name"] == f"sa-logreg-{run}", fetched)
    check(fetched["model_description"] == "logistic regression on two features", fetched)
    downloaded = os.path.join(work, "downloaded.py")
    step("download_model_file", lambda: dev.download_model_file(model["id"], downloaded))
    with open(downloaded) as f:
        check(f.read() == TEMPLATE, "the downloaded file is the uploaded one")
    available = step("get_available_models", lambda: dev.get_available_models(task=TASK))
    check(model["id"] in {m["id"] for m in available}, "get_available_models lists it")
    spare = created("create_model", dev.create_model(f"sa-spare-{run}", TASK, template, "SingaAutoLogReg"))
    step("delete_model", lambda: dev.delete_model(spare["id"]))
    check(spare["id"] not in {m["id"] for m in dev.get_available_models(task=TASK)}, "deleted")

    app = f"sa-app-{run}"
    job = step("create_train_job", lambda: dev.create_train_job(
        app, TASK, train["id"], val["id"], {"MODEL_TRIAL_COUNT": 2}, models=[model["id"]],
        train_args={"features": ["x1", "x2"], "target": "y"}))
    check(job["app"] == app and job["app_version"] == 1, job)
    ended = step("training (get_train_job until STOPPED)", lambda: wait_for(
        "the train job to end",
        lambda: (lambda j: j if j["status"] in ("STOPPED", "ERRORED") else None)(
            dev.get_train_job(app))))
    check(ended["status"] == "STOPPED", ended)
    check(app in {j["app"] for j in step("get_train_jobs_by_user",
                                          lambda: dev.get_train_jobs_by_user(me_id(dev)))},
          "get_train_jobs_by_user")
    check(len(step("get_train_jobs_of_app", lambda: dev.get_train_jobs_of_app(app))) == 1, "of app")
    stopped = step("stop_train_job (already stopped: no-op)", lambda: dev.stop_train_job(app))
    check(stopped["app"] == app, stopped)
    trials = step("get_trials_of_train_job", lambda: dev.get_trials_of_train_job(app))
    check(len(trials) == 2, trials)
    best = step("get_best_trials_of_train_job", lambda: dev.get_best_trials_of_train_job(app, max_count=1))
    check(len(best) == 1 and best[0]["score"] > 0.8, best)
    trial = step("get_trial", lambda: dev.get_trial(best[0]["id"]))
    check("C" in trial["proposal"]["knobs"], trial)
    logs = step("get_trial_logs", lambda: dev.get_trial_logs(best[0]["id"]))
    check(any(m["message"] == "fitting" for m in logs["messages"]), logs)
    step("get_trial_parameters (refused: no pickle)", lambda: fails(
        "get_trial_parameters", lambda: dev.get_trial_parameters(best[0]["id"])))
    step("load_trial_model (refused: no pickle)", lambda: fails(
        "load_trial_model", lambda: dev.load_trial_model(best[0]["id"], object)))

    inference = step("create_inference_job", lambda: dev.create_inference_job(app))
    host = inference["predictor_host"]
    running = step("serving (get_running_inference_job)", lambda: wait_for(
        "the inference job to run",
        lambda: (lambda j: j if j["status"] == "RUNNING" else None)(dev.get_running_inference_job(app))))
    check(running["app"] == app, running)
    prediction = step("predict at http://{predictor_host}/predict", lambda: wait_for(
        "a prediction", lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            requests.post(f"http://{host}/predict", json={"query": {"x1": 2.0, "x2": 2.0}}, timeout=10))))
    check(prediction["prediction"][1] > 0.5, prediction)
    check(len(step("get_inference_jobs_by_user",
                   lambda: dev.get_inference_jobs_by_user(me_id(dev)))) >= 1, "by user")
    check(len(step("get_inference_jobs_of_app", lambda: dev.get_inference_jobs_of_app(app))) == 1,
          "of app")
    # The checkpoint flow: the best trial's parameters (Duma's format, downloaded raw) uploaded
    # with a template whose knob is fixed (SINGA-Auto builds a checkpoint's model with no knobs).
    parameters = requests.get(
        f"http://{args.admin_host}:{args.admin_port}/trials/{best[0]['id']}/parameters",
        headers={"Authorization": f"Bearer {dev._token}"}, timeout=30)
    check(parameters.status_code == 200, parameters.text)
    checkpoint = os.path.join(work, "best.params")
    with open(checkpoint, "wb") as f:
        f.write(parameters.content)
    fixed = os.path.join(work, "sa_logreg_fixed.py")
    with open(fixed, "w") as f:
        f.write(TEMPLATE.replace("FloatKnob(0.01, 10.0, is_exp=True)", "FixedKnob(1.0)")
                .replace("import BaseModel, FloatKnob", "import BaseModel, FixedKnob"))
    restored = f"sa-ckpt-{run}"
    created("create_model (with model_preload_file_path)", step(
        "create_model (with model_preload_file_path)", lambda: dev.create_model(
            restored, TASK, fixed, "SingaAutoLogReg", model_preload_file_path=checkpoint)))
    by_checkpoint = step("create_inference_job_by_checkpoint",
                         lambda: dev.create_inference_job_by_checkpoint(restored))
    check(by_checkpoint.get("predictor_host"), by_checkpoint)
    step("serving the checkpoint", lambda: wait_for(
        "the checkpoint's inference job to run",
        lambda: (lambda j: j if j["status"] == "RUNNING" else None)(
            dev.get_running_inference_job(restored))))
    query = {"query": {"x1": 0.4, "x2": -0.3}}
    answers = [step(f"predict at {name}", lambda host=host: wait_for(
        "a prediction", lambda: (lambda r: r.json() if r.status_code == 200 else None)(
            requests.post(f"http://{host}/predict", json=query, timeout=10))))["prediction"]
        for name, host in (("the trained job", host), ("the checkpoint", by_checkpoint["predictor_host"]))]
    check(answers[0] == answers[1], f"the checkpoint answers as the trained job: {answers}")
    step("stop_inference_job (checkpoint)", lambda: dev.stop_inference_job(restored))
    stopped = step("stop_inference_job", lambda: dev.stop_inference_job(app))
    check(stopped["app"] == app, stopped)
    step("send_event (refused: internal to SINGA-Auto)", lambda: fails(
        "send_event", lambda: dev.send_event("trial_errored", trial_id=best[0]["id"])))
    dev.create_train_job(app, TASK, train["id"], val["id"], {"MODEL_TRIAL_COUNT": 50},
                         models=[model["id"]], train_args={"features": ["x1", "x2"], "target": "y"})
    step("stop_all_jobs (superadmin)", admin.stop_all_jobs)
    check(dev.get_train_job(app)["status"] in ("STOPPED", "ERRORED"), "stop_all_jobs stopped it")
    dev.logout()
    check(dev.get_current_user() is None, "logout")
    print("singa-auto client: every call behaved")


def me_id(client):
    return client.get_current_user()["id"]


if __name__ == "__main__":
    main()
