"""An ONNX model trained elsewhere, served by a running Duma without training: a scikit-learn
MLP classifier exported with skl2onnx is uploaded as a model, served from its model_id as an
inference job, and its answers through nginx must equal scikit-learn's predict_proba on the same
rows (to 1e-5); the same through Triton's own Python client (tritonclient.http, the Open Inference
Protocol, binary and JSON tensors) by job id and by deployment name; an export with ZipMap is
refused at upload, saying how to export it.

    python scripts/smoke/onnx_models.py --admin http://localhost:13000 --superadmin-password ...
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
import warnings

import numpy as np
import requests
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from checks import Checks, fresh_user  # noqa: E402
from duma.client import DumaClientError  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)
check, step, wait_for = Checks("onnx smoke", deadline=120.0).tools()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    client = fresh_user(args.admin, args.superadmin_password, "MODEL_DEVELOPER", "onnx")

    x, y = make_classification(n_samples=400, n_features=12, n_informative=6, n_classes=3, random_state=5)
    x = x.astype(np.float32)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=400, random_state=0).fit(x[:300], y[:300])
    work = tempfile.mkdtemp(prefix="duma-onnx-")
    path, zipmap = os.path.join(work, "mlp.onnx"), os.path.join(work, "zipmap.onnx")
    with open(path, "wb") as f:
        f.write(to_onnx(mlp, x[:1], options={id(mlp): {"zipmap": False}}).SerializeToString())
    with open(zipmap, "wb") as f:
        f.write(to_onnx(mlp, x[:1]).SerializeToString())

    model = step("upload a scikit-learn MLP exported to ONNX", lambda: client.create_model(
        f"mlp-{uuid.uuid4().hex[:6]}", "TABULAR_CLASSIFICATION", path, "Mlp"))
    shown = client.get_model(model["id"])
    check(shown["template_kind"] == "onnx", f"not recognised as ONNX: {shown}")
    check(shown["signature"]["inputs"][0]["shape"] == [-1, 12], f"signature: {shown['signature']}")
    try:
        client.create_model("zipmapped", "TABULAR_CLASSIFICATION", zipmap, "Mlp")
        check(False, "an export with ZipMap was accepted")
    except DumaClientError as error:
        check(error.status == 400 and "zipmap=False" in error.message, f"ZipMap refusal: {error}")

    app = f"mlp-{uuid.uuid4().hex[:6]}"
    job = step("serve it from its model_id (nothing trains)", lambda: client.create_inference_job(
        app, model_id=model["id"]))
    wait_for("the inference job RUNNING",
             lambda: client.get_running_inference_job(app)["status"] == "RUNNING")
    rows = x[300:]
    answers = step("predict 100 rows through nginx", lambda: requests.post(
        f"http://{job['predictor_host']}/predict", json={"queries": rows.tolist()}, timeout=30))
    check(answers.status_code == 200, f"{answers.status_code} {answers.text[:200]}")
    got = np.array(answers.json()["predictions"])
    expected = mlp.predict_proba(rows)
    gap = float(np.max(np.abs(got - expected)))
    print(f"  largest difference from scikit-learn's predict_proba: {gap:.2e} (allowed 1e-5)")
    check(gap <= 1e-5, f"answers differ from scikit-learn's by {gap}")

    # Cold start, reported (the bar is 1 s; a figure, not a check): upload → first answer.
    began = time.monotonic()
    cold = client.create_model(f"cold-{uuid.uuid4().hex[:6]}", "TABULAR_CLASSIFICATION", path, "Mlp")
    cold_app = f"cold-{uuid.uuid4().hex[:6]}"
    cold_job = client.create_inference_job(cold_app, model_id=cold["id"])
    cold_url = f"http://{cold_job['predictor_host']}/predict"
    wait_for("the cold model's first answer", lambda: requests.post(
        cold_url, json={"query": rows[0].tolist()}, timeout=5).status_code == 200, interval=0.01)
    print(f"  cold start, upload of a {os.path.getsize(path) // 1024} KiB file to its first answer: "
          f"{time.monotonic() - began:.2f} s (target 1 s)")
    client.stop_inference_job(cold_app)

    # Triton's client, unchanged, through nginx: by inference job id, then by deployment name.
    import tritonclient.http as triton
    deployment = f"{app}-live"
    client.create_deployment(deployment, app, app_version=1)
    wait_for("the deployment serving", lambda: client.get_deployment(deployment)["status"] == "SERVING")
    host = job["predictor_host"].split("/")[0]
    triton_client = triton.InferenceServerClient(url=host)
    check(triton_client.is_server_live(), "not live for tritonclient")
    for name in (job["id"], deployment):
        check(triton_client.is_model_ready(name), f"{name} not ready for tritonclient")
        metadata = triton_client.get_model_metadata(name)
        check(metadata["platform"] == "onnxruntime_onnx", f"metadata: {metadata}")
        input_name = metadata["inputs"][0]["name"]
        for binary in (True, False):
            tensor = triton.InferInput(input_name, list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            result = triton_client.infer(name, [tensor])
            got = result.as_numpy(metadata["outputs"][-1]["name"])
            check(got is not None, f"{name}: no output in {result.get_response()}")
            gap = float(np.max(np.abs(got - expected)))
            check(gap <= 1e-5, f"{name} (binary={binary}): differs from scikit-learn by {gap}")
    print(f"  tritonclient: by job id and by deployment name, binary and JSON tensors, within 1e-5")
    # The deployment serves from the job made above: deleting it stops that job too.
    client.delete_deployment(deployment)
    print("onnx smoke: served as scikit-learn answers")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"    took {time.monotonic() - started:.1f}s")
