"""Writes ONNX exports of scikit-learn models and the framework's own predictions on held-out
rows, for runtime/tests/onnx.rs: python onnx_exports.py OUT_DIR."""

import json
import os
import sys

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression

out = sys.argv[1]
x, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3, random_state=1)
x = x.astype(np.float32)
classifier = LogisticRegression(max_iter=500).fit(x[:250], y[:250])
rows = x[250:]
with open(os.path.join(out, "classifier.onnx"), "wb") as f:
    f.write(to_onnx(classifier, x[:1], options={id(classifier): {"zipmap": False}}).SerializeToString())
with open(os.path.join(out, "zipmap.onnx"), "wb") as f:
    f.write(to_onnx(classifier, x[:1]).SerializeToString())
xr, yr = make_regression(n_samples=200, n_features=5, random_state=2)
xr = xr.astype(np.float32)
regressor = LinearRegression().fit(xr[:150], yr[:150])
with open(os.path.join(out, "regressor.onnx"), "wb") as f:
    f.write(to_onnx(regressor, xr[:1]).SerializeToString())
json.dump({
    "classifier_rows": rows.tolist(),
    "classifier_probabilities": classifier.predict_proba(rows).tolist(),
    "regressor_rows": xr[150:].tolist(),
    "regressor_predictions": regressor.predict(xr[150:]).tolist(),
}, open(os.path.join(out, "expected.json"), "w"))
