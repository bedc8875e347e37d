"""Evaluations against scikit-learn: a classifier deployment and a regressor app version of a
running Duma are evaluated on held-out labelled datasets, the same rows are predicted through
nginx, and every number of each evaluation must equal scikit-learn's metrics on those
predictions (classification_report with zero_division=0, confusion_matrix, accuracy; MAE, RMSE,
R²) to 1e-9. Prints both side by side.

    python scripts/smoke/evaluations.py --admin http://localhost:13000 --superadmin-password ...
"""

import argparse
import csv
import os
import random
import sys
import tempfile
import time
import uuid

import numpy as np
import requests
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix,
                             mean_absolute_error, r2_score, root_mean_squared_error)

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from checks import Checks, fresh_user  # noqa: E402

check, step, wait_for = Checks("evaluations smoke", deadline=240.0).tools()
TOLERANCE = 1e-9
SPECIES = ["setosa", "versicolor", "virginica"]


def classification_rows(rng, n, noise):
    """Three text classes in three numeric features and a categorical one; `noise` of the rows
    get a random label, so no model is perfect."""
    rows = []
    for i in range(n):
        k = i % 3
        label = SPECIES[rng.randrange(3)] if rng.random() < noise else SPECIES[k]
        rows.append({"a": round(k * 1.5 + rng.gauss(0, 1), 4), "b": round(-k + rng.gauss(0, 1), 4),
                     "c": round(rng.gauss(0, 1), 4), "soil": rng.choice(["clay", "sand"]),
                     "species": label})
    return rows


def regression_rows(rng, n):
    rows = []
    for _ in range(n):
        x1, x2 = rng.uniform(-2, 2), rng.uniform(-2, 2)
        rows.append({"x1": round(x1, 4), "x2": round(x2, 4),
                     "y": round(3 * x1 - 2 * x2 + x1 * x2 + rng.gauss(0, 0.5), 4)})
    return rows


def write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def close(a, b):
    return abs(float(a) - float(b)) <= TOLERANCE


def evaluated(client, evaluation):
    def ended():
        e = client.get_evaluation(evaluation["id"])
        return e if e["status"] in ("COMPLETED", "ERRORED") else None
    e = wait_for(f"evaluation {evaluation['id']} ending", ended)
    check(e["status"] == "COMPLETED", f"evaluation ERRORED: {e['error']}")
    return e


def compare_classification(metrics, truth, predicted):
    labels = sorted(set(truth) | set(predicted))
    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    matrix = confusion_matrix(truth, predicted, labels=labels).tolist()
    ours = metrics["classification"]
    print(f"  {'metric':<28} {'Duma':>12} {'scikit-learn':>14}")
    rows = [("accuracy", ours["accuracy"], accuracy_score(truth, predicted))]
    for label in labels:
        for key in ("precision", "recall", "f1"):
            rows.append((f"{label} {key}", ours["per_label"][label][key], report[label][f"{key}-score" if key == "f1" else key]))
        rows.append((f"{label} support", ours["per_label"][label]["support"], report[label]["support"]))
    for ours_key, theirs_key in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for key in ("precision", "recall", "f1"):
            rows.append((f"{theirs_key} {key}", ours[ours_key][key], report[theirs_key][f"{key}-score" if key == "f1" else key]))
    for name, a, b in rows:
        print(f"  {name:<28} {a:>12.6f} {b:>14.6f}")
        check(close(a, b), f"{name}: Duma {a} vs scikit-learn {b}")
    check(ours["labels"] == labels, f"labels {ours['labels']} vs {labels}")
    check(ours["confusion_matrix"] == matrix, f"confusion matrix {ours['confusion_matrix']} vs {matrix}")
    print(f"  confusion matrix (both)      {matrix}")


def compare_regression(metrics, truth, predicted):
    ours = metrics["regression"]
    theirs = {"mae": mean_absolute_error(truth, predicted),
              "rmse": root_mean_squared_error(truth, predicted),
              "r2": r2_score(truth, predicted)}
    print(f"  {'metric':<28} {'Duma':>12} {'scikit-learn':>14}")
    for key, value in theirs.items():
        print(f"  {key:<28} {ours[key]:>12.6f} {value:>14.6f}")
        check(close(ours[key], value), f"{key}: Duma {ours[key]} vs scikit-learn {value}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    client = fresh_user(args.admin, args.superadmin_password, "APP_DEVELOPER", "evaluator")
    rng = random.Random(11)
    work = tempfile.mkdtemp(prefix="duma-evaluations-")
    suffix = uuid.uuid4().hex[:6]

    def train(task, app, train_rows, val_rows, models, target, features):
        train_id = client.create_dataset(f"{app}-train", task, write(f"{work}/{app}-train.csv", train_rows))["id"]
        val_id = client.create_dataset(f"{app}-val", task, write(f"{work}/{app}-val.csv", val_rows))["id"]
        available = {m["name"]: m["id"] for m in client.get_available_models(task)}
        client.create_train_job(app, task, train_id, val_id, {"MODEL_TRIAL_COUNT": 2},
                                models=[available[m] for m in models],
                                train_args={"target": target, "features": features})
        wait_for(f"{app} trained", lambda: client.get_train_job(app)["status"] == "STOPPED")

    kinds_app, prices_app = f"kinds-{suffix}", f"prices-{suffix}"
    step("train a classifier app (2 models) and a regressor app", lambda: (
        train("TABULAR_CLASSIFICATION", kinds_app, classification_rows(rng, 300, 0.0),
              classification_rows(rng, 90, 0.0), ["LogisticRegression", "KNeighborsClassifier"],
              "species", ["a", "b", "c", "soil"]),
        train("TABULAR_REGRESSION", prices_app, regression_rows(rng, 300), regression_rows(rng, 90),
              ["RidgeRegression", "RandomForestRegressor"], "y", ["x1", "x2"])))

    test_kinds = classification_rows(rng, 240, 0.15)
    test_prices = regression_rows(rng, 200)
    kinds_data = client.create_dataset("kinds-test", "TABULAR_CLASSIFICATION",
                                       write(f"{work}/kinds-test.csv", test_kinds))["id"]
    prices_data = client.create_dataset("prices-test", "TABULAR_REGRESSION",
                                        write(f"{work}/prices-test.csv", test_prices))["id"]

    name = f"kinds-{suffix}"
    deployment = client.create_deployment(name, kinds_app)
    wait_for("the deployment serving", lambda: client.get_deployment(name)["status"] == "SERVING")
    kinds_eval = step("evaluate the deployment on held-out rows", lambda: evaluated(
        client, client.create_evaluation(kinds_data, deployment=name)))
    prices_eval = step("evaluate the regressor's app version", lambda: evaluated(
        client, client.create_evaluation(prices_data, app=prices_app)))

    def answers(predict_url, rows, target):
        queries = [{k: v for k, v in row.items() if k != target} for row in rows]
        res = requests.post(predict_url, json={"queries": queries}, timeout=60)
        check(res.status_code == 200, f"{predict_url}: {res.status_code} {res.text[:200]}")
        return res.json()["predictions"]

    kinds_answers = step("the same rows through nginx → the deployment", lambda: answers(
        deployment["url"], test_kinds, "species"))
    predicted = [SPECIES[int(np.argmax(p))] for p in kinds_answers]  # classes sort as text
    truth = [row["species"] for row in test_kinds]
    print("  classifier deployment (ensemble of 2 models), 240 rows:")
    compare_classification(kinds_eval["metrics"], truth, predicted)

    client.create_inference_job(prices_app)
    wait_for("the regressor serving", lambda: client.get_running_inference_job(prices_app)["status"] == "RUNNING")
    host = client.get_running_inference_job(prices_app)["predictor_host"]
    prices_answers = step("the same rows through nginx → the regressor", lambda: answers(
        f"http://{host}/predict", test_prices, "y"))
    print("  regressor app version (ensemble of 2 models), 200 rows:")
    compare_regression(prices_eval["metrics"], [row["y"] for row in test_prices],
                       [float(p) for p in prices_answers])
    check(kinds_eval["rows"] == 240 and prices_eval["rows"] == 200, "rows scored")
    side = client.compare_evaluations(kinds_app)
    check(len(side["versions"]) == 1 and "macro_f1" in side["versions"][0]["scores"], f"side by side: {side}")

    client.delete_deployment(name)
    client.stop_inference_job(prices_app)
    print("evaluations smoke: every number equals scikit-learn's")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"    took {time.monotonic() - started:.1f}s")
