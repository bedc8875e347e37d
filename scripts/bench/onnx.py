"""Serving a model trained elsewhere: Duma's full path next to FastAPI and MLServer, same run.

One 32-feature logistic regression (scikit-learn), served three ways each, with every server
process pinned to CPU 0 and wrk pinned to CPU 1:

  ONNX file        Duma (nginx → predictor → Redis → inference worker, ONNX Runtime through `ort`),
                   FastAPI + onnxruntime (uvicorn, one process), MLServer 1.x (a custom runtime
                   over onnxruntime: MLServer ships none for ONNX; its docs say to write one)
  scikit-learn     Duma (a Python template uploaded with a checkpoint), FastAPI + scikit-learn,
                   MLServer's scikit-learn runtime (mlserver-sklearn)

For each: saturation (1-row requests, 32 connections), rows/s with 32-row requests, idle latency
(one connection, p50/p99), and for Duma the cold start (ONNX upload → first answer).

    scripts/bench-onnx     (makes the throwaway virtualenv of the peers and runs this)
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import requests

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))
from duma import params  # noqa: E402
from duma.client import Client  # noqa: E402

FEATURES = 32
SERVER_CPU, LOAD_CPU = "0", "1"
SECONDS = int(os.environ.get("DUMA_BENCH_SECONDS", "10"))

TEMPLATE = '''
import numpy as np
from sklearn.linear_model import LogisticRegression
from duma.model import BaseModel, FixedKnob


class SkLogReg(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"C": FixedKnob(1.0)}

    def __init__(self, **knobs):
        self._clf = None

    def train(self, dataset_path, **kwargs):
        raise RuntimeError("served from a checkpoint")

    def evaluate(self, dataset_path, **kwargs):
        return 0.0

    def predict(self, queries):
        return self._clf.predict_proba(np.asarray(queries, dtype=np.float64)).tolist()

    def dump_parameters(self):
        return {"coef": self._clf.coef_, "intercept": self._clf.intercept_, "classes": self._clf.classes_}

    def load_parameters(self, params):
        self._clf = LogisticRegression()
        self._clf.coef_ = params["coef"]
        self._clf.intercept_ = params["intercept"]
        self._clf.classes_ = params["classes"]
'''

FASTAPI_APP = '''
import os
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
KIND = os.environ["BENCH_KIND"]
if KIND == "onnx":
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    def answer(rows):
        return session.run(["probabilities"], {name: np.asarray(rows, dtype=np.float32)})[0].tolist()
else:
    import joblib
    model = joblib.load(os.environ["BENCH_MODEL"])
    def answer(rows):
        return model.predict_proba(np.asarray(rows, dtype=np.float64)).tolist()


class Body(BaseModel):
    query: list[float] | None = None
    queries: list[list[float]] | None = None


@app.post("/predict")
def predict(body: Body):
    if body.queries is not None:
        return {"predictions": answer(body.queries)}
    return {"prediction": answer([body.query])[0]}
'''

MLSERVER_ONNX_RUNTIME = '''
import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        out = self._session.run(["probabilities"], {self._input: rows})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("probabilities", out)])
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, deadline=120.0, method="get", **kwargs):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            r = getattr(requests, method)(url, timeout=2, **kwargs)
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench-onnx: {url} never answered 200")


def wrk(url, body, connections):
    """(requests/s, p50 ms, p99 ms) of POSTing `body` to `url` for SECONDS, wrk on LOAD_CPU."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = [==[{json.dumps(body)}]==]\n")
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{SECONDS}s", "--latency",
         "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"bench-onnx: wrk saw errors at {url}:\n{out}")

    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, ms("50%"), ms("99%")


def measure(name, url, row_body, batch_body, rows_per_batch):
    wrk(url, row_body, 4)  # warm up
    saturated, _, _ = wrk(url, row_body, 32)
    batched, _, _ = wrk(url, batch_body, 8)
    _, p50, p99 = wrk(url, row_body, 1)
    result = {"name": name, "rps": saturated, "rows": batched * rows_per_batch, "p50": p50, "p99": p99}
    print(f"    {name:<34} {saturated:>9.0f} req/s  {batched * rows_per_batch:>10.0f} rows/s"
          f"  p50 {p50:.3f} ms  p99 {p99:.3f} ms", flush=True)
    return result


class Processes:
    def __init__(self):
        self.running = []

    def start(self, args, log=subprocess.DEVNULL, **kwargs):
        p = subprocess.Popen(["taskset", "-c", SERVER_CPU, *args], start_new_session=True,
                             stdout=log, stderr=subprocess.STDOUT, **kwargs)
        self.running.append(p)
        return p

    def stop(self, p):
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.running.remove(p)

    def stop_all(self):
        for p in list(self.running):
            self.stop(p)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers-python", required=True, help="python of the peers' virtualenv")
    parser.add_argument("--duma", default=os.path.join(REPO, "target/release/duma"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="duma-bench-onnx-")
    procs = Processes()
    try:
        run(args, work, procs)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def start_duma(args, work, procs, predictors):
    """`duma up` from the release build with `predictors` replicas: (its process, a signed-in
    client, its data folder)."""
    # Its own temporary folder: PostgreSQL (run as `postgres` under root) must reach it.
    data = tempfile.mkdtemp(prefix="duma-bench-data-")
    ports = {"admin": free_port(), "http": free_port(), "prometheus": free_port(), "predictor": free_port(),
             "worker": free_port()}
    first = 19400
    env = {**os.environ, "DUMA_PYTHON__ENV_DIR": os.path.join(REPO, "target/duma-test-cache/venvs")}
    log = os.path.join(work, f"duma-up-{predictors}.log")
    up = procs.start([args.duma, "up", "--data-dir", data, "--admin-port", str(ports["admin"]),
                      "--http-port", str(ports["http"]), "--prometheus-port", str(ports["prometheus"]),
                      "--predictor-port", str(ports["predictor"]), "--worker-port", str(ports["worker"]),
                      "--predictors", str(predictors), "--inference-job-ports", f"{first}-{first + 9}"],
                     env=env, log=open(log, "w"))
    admin = f"http://localhost:{ports['admin']}"
    password_file = os.path.join(data, "secrets", "superadmin-password")
    end = time.monotonic() + 180
    while not os.path.exists(password_file) and time.monotonic() < end:
        time.sleep(0.1)
    try:
        wait_http(admin + "/", deadline=180)
    except SystemExit:
        print(open(log).read()[-3000:], file=sys.stderr)
        raise
    client = Client("localhost", ports["admin"], timeout=60)
    client.login("superadmin@rafiki", open(password_file).read().strip())
    return up, client, data


def run(args, work, procs):
    # The model, written by the peers' Python (scikit-learn, skl2onnx, joblib live there).
    subprocess.run([args.peers_python, "-c", f'''
import joblib, numpy as np, json
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
x, y = make_classification(n_samples=2000, n_features={FEATURES}, random_state=0)
clf = LogisticRegression(max_iter=1000).fit(x, y)
open("{work}/model.onnx", "wb").write(to_onnx(clf, x[:1].astype(np.float32),
    options={{id(clf): {{"zipmap": False}}}}).SerializeToString())
joblib.dump(clf, "{work}/model.joblib")
np.savez("{work}/params.npz", coef=clf.coef_, intercept=clf.intercept_, classes=clf.classes_, rows=x[:64])
'''], check=True)
    saved = np.load(f"{work}/params.npz")
    with open(f"{work}/checkpoint.params", "wb") as f:
        f.write(params.dumps({"coef": saved["coef"], "intercept": saved["intercept"],
                              "classes": saved["classes"]}))
    with open(f"{work}/sk_template.py", "w") as f:
        f.write(TEMPLATE)
    rows = saved["rows"].astype(np.float32).tolist()
    row_body, batch_body = {"query": rows[0]}, {"queries": rows[:32]}
    results = {}

    print(f"bench-onnx: servers on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}, {SECONDS} s per figure", flush=True)
    # --- Duma ------------------------------------------------------------------------------------
    # One predictor: its HTTP workers already use every core it has, so on one core a second
    # replica (duma up's default, for availability) only splits the batching; measured below too.
    duma, client, data = start_duma(args, work, procs, predictors=1)
    began = time.monotonic()
    model = client.create_model(f"lr-{uuid.uuid4().hex[:6]}", "TABULAR_CLASSIFICATION", f"{work}/model.onnx", "Lr")
    job = client.create_inference_job("bench-onnx", model_id=model["id"])
    url = f"http://{job['predictor_host']}/predict"
    wait_http(url, method="post", json=row_body, deadline=60)
    cold = time.monotonic() - began
    onnx_answer = requests.post(url, json=row_body, timeout=5).json()["prediction"]
    results["duma_onnx"] = measure("Duma, ONNX (full path)", url, row_body, batch_body, 32)

    sk = client.create_model(f"sk-{uuid.uuid4().hex[:6]}", "TABULAR_CLASSIFICATION", f"{work}/sk_template.py",
                             "SkLogReg", dependencies={"scikit-learn": "1.6.1"},
                             checkpoint_path=f"{work}/checkpoint.params")
    sk_job = client.create_inference_job("bench-sk", model_id=sk["id"])
    sk_url = f"http://{sk_job['predictor_host']}/predict"
    wait_http(sk_url, method="post", json=row_body, deadline=600)
    sk_answer = requests.post(sk_url, json=row_body, timeout=5).json()["prediction"]
    results["duma_sk"] = measure("Duma, scikit-learn template", sk_url, row_body, batch_body, 32)
    procs.stop(duma)
    shutil.rmtree(data, ignore_errors=True)

    duma, client, data = start_duma(args, work, procs, predictors=2)
    model = client.create_model(f"lr-{uuid.uuid4().hex[:6]}", "TABULAR_CLASSIFICATION", f"{work}/model.onnx", "Lr")
    job = client.create_inference_job("bench-onnx", model_id=model["id"])
    url = f"http://{job['predictor_host']}/predict"
    wait_http(url, method="post", json=row_body, deadline=60)
    wrk(url, row_body, 4)
    two_predictors, _, _ = wrk(url, row_body, 32)
    print(f"    {'Duma, ONNX, two predictors':<34} {two_predictors:>9.0f} req/s  (duma up's default replicas)",
          flush=True)
    procs.stop(duma)
    shutil.rmtree(data, ignore_errors=True)

    # --- FastAPI ---------------------------------------------------------------------------------
    with open(f"{work}/fastapi_app.py", "w") as f:
        f.write(FASTAPI_APP)
    for kind, model_file, label in (("onnx", "model.onnx", "FastAPI + onnxruntime"),
                                    ("sk", "model.joblib", "FastAPI + scikit-learn")):
        port = free_port()
        server = procs.start([args.peers_python, "-m", "uvicorn", "fastapi_app:app", "--port", str(port),
                              "--workers", "1", "--log-level", "warning", "--no-access-log"], cwd=work,
                             env={**os.environ, "BENCH_KIND": kind, "BENCH_MODEL": f"{work}/{model_file}",
                                  "OMP_NUM_THREADS": "1"})
        url = f"http://127.0.0.1:{port}/predict"
        peer_answer = wait_http(url, method="post", json=row_body).json()["prediction"]
        gap = float(np.max(np.abs(np.array(peer_answer) - np.array(onnx_answer if kind == "onnx" else sk_answer))))
        if gap > 1e-5:
            raise SystemExit(f"bench-onnx: {label} answers differently from Duma by {gap}")
        results[f"fastapi_{kind}"] = measure(label, url, row_body, batch_body, 32)
        procs.stop(server)

    # --- MLServer --------------------------------------------------------------------------------
    for kind, label in (("onnx", "MLServer + onnxruntime (custom)"), ("sk", "MLServer, mlserver-sklearn")):
        folder = os.path.join(work, f"mlserver-{kind}")
        os.makedirs(folder)
        port = free_port()
        with open(f"{folder}/settings.json", "w") as f:
            json.dump({"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                       "parallel_workers": 0, "debug": False}, f)
        if kind == "onnx":
            with open(f"{folder}/onnx_runtime.py", "w") as f:
                f.write(MLSERVER_ONNX_RUNTIME)
            settings = {"name": "lr", "implementation": "onnx_runtime.OnnxRuntime",
                        "parameters": {"uri": f"{work}/model.onnx"}}
        else:
            settings = {"name": "lr", "implementation": "mlserver_sklearn.SKLearnModel",
                        "parameters": {"uri": f"{work}/model.joblib"}}
        with open(f"{folder}/model-settings.json", "w") as f:
            json.dump(settings, f)
        server = procs.start([os.path.join(os.path.dirname(args.peers_python), "mlserver"), "start", folder],
                             cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"})
        url = f"http://127.0.0.1:{port}/v2/models/lr/infer"

        def v2(batch):
            body = {"inputs": [{"name": "input", "datatype": "FP32" if kind == "onnx" else "FP64",
                                "shape": [len(batch), FEATURES], "data": batch}]}
            if kind == "sk":
                body["outputs"] = [{"name": "predict_proba"}]
            return body
        wait_http(url, method="post", json=v2(rows[:1]), deadline=120)
        results[f"mlserver_{kind}"] = measure(label, url, v2(rows[:1]), v2(rows[:32]), 32)
        procs.stop(server)

    # --- the table -------------------------------------------------------------------------------
    def ratio(a, b, key):
        return results[a][key] / results[b][key]

    print("\nbench-onnx: the same model file, server side on one pinned core (same run)")
    print(f"  ONNX, 1-row saturation: Duma {results['duma_onnx']['rps']:.0f} req/s (one predictor; two: "
          f"{two_predictors:.0f}) = "
          f"{ratio('duma_onnx', 'fastapi_onnx', 'rps'):.2f}x FastAPI+onnxruntime (bar 2x), "
          f"{ratio('duma_onnx', 'mlserver_onnx', 'rps'):.2f}x MLServer (bar 5x)")
    print(f"  ONNX, 32-row requests: Duma {results['duma_onnx']['rows']:.0f} rows/s = "
          f"{ratio('duma_onnx', 'fastapi_onnx', 'rows'):.2f}x FastAPI+onnxruntime (bar 3x)")
    print(f"  ONNX, one connection: Duma p50 {results['duma_onnx']['p50']:.3f} ms (bar 0.5 ms), "
          f"FastAPI {results['fastapi_onnx']['p50']:.3f} ms, MLServer {results['mlserver_onnx']['p50']:.3f} ms")
    print(f"  ONNX cold start, upload of a {os.path.getsize(f'{work}/model.onnx')} B file to its first "
          f"answer: {cold:.2f} s (bar 1 s)")
    print(f"  scikit-learn, 1-row saturation: Duma {results['duma_sk']['rps']:.0f} req/s = "
          f"{ratio('duma_sk', 'fastapi_sk', 'rps'):.2f}x FastAPI, {ratio('duma_sk', 'mlserver_sk', 'rps'):.2f}x MLServer")
    print(f"  scikit-learn, one connection: Duma p50 {results['duma_sk']['p50']:.3f} ms vs FastAPI "
          f"{results['fastapi_sk']['p50']:.3f} ms (bar: at most FastAPI's)")


if __name__ == "__main__":
    main()
