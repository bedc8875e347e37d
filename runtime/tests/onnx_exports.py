"""Writes ONNX exports of models from each framework Duma serves, and each framework's own
predictions on held-out rows, for runtime/tests/runtime/onnx.rs and the e2e ONNX tests:

    .venv-exports/bin/python onnx_exports.py OUT_DIR

OUT_DIR gets one `.onnx` file per export and `expected.json`: `exports`, a list of
`{"name", "file", "rows", "expected"}` (expected: the framework's probabilities for a classifier,
its predictions for a regressor, its outputs for a network), plus the scikit-learn classifier's
and regressor's rows and answers under their own keys. Also files that must be refused: a ZipMap
classifier, an operator no runtime knows, an input of 2^31 values per row.
"""

import contextlib
import json
import logging
import os
import sys

import lightgbm
import numpy as np
import onnx
import onnxmltools
import torch
import xgboost
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType
from skl2onnx import to_onnx
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression

out = sys.argv[1]
exports = []


def write(name, model):
    data = model if isinstance(model, bytes) else model.SerializeToString()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def export(name, model, rows, expected):
    write(f"{name}.onnx", model)
    exports.append({"name": name, "file": f"{name}.onnx", "rows": np.asarray(rows).tolist(),
                    "expected": np.asarray(expected, dtype=np.float64).tolist()})


x, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3, random_state=1)
x = x.astype(np.float32)
train, rows = x[:250], x[250:]
xr, yr = make_regression(n_samples=200, n_features=5, random_state=2)
xr = xr.astype(np.float32)
train_r, rows_r = xr[:150], xr[150:]

# scikit-learn, through skl2onnx.
classifier = LogisticRegression(max_iter=500).fit(train, y[:250])
export("classifier", to_onnx(classifier, x[:1], options={id(classifier): {"zipmap": False}}),
       rows, classifier.predict_proba(rows))
write("zipmap.onnx", to_onnx(classifier, x[:1]))
regressor = LinearRegression().fit(train_r, yr[:150])
export("regressor", to_onnx(regressor, xr[:1]), rows_r, regressor.predict(rows_r))

# XGBoost and LightGBM, through onnxmltools (tree ensembles).
features = [("input", FloatTensorType([None, x.shape[1]]))]
features_r = [("input", FloatTensorType([None, xr.shape[1]]))]
xgb = xgboost.XGBClassifier(n_estimators=30, max_depth=4, random_state=0).fit(train, y[:250])
export("xgboost_classifier", onnxmltools.convert_xgboost(xgb, initial_types=features),
       rows, xgb.predict_proba(rows))
xgb_r = xgboost.XGBRegressor(n_estimators=30, max_depth=4, random_state=0).fit(train_r, yr[:150])
export("xgboost_regressor", onnxmltools.convert_xgboost(xgb_r, initial_types=features_r),
       rows_r, xgb_r.predict(rows_r))
lgbm = lightgbm.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1).fit(train, y[:250])
export("lightgbm_classifier",
       onnxmltools.convert_lightgbm(lgbm, initial_types=features, zipmap=False),
       rows, lgbm.predict_proba(rows))
lgbm_r = lightgbm.LGBMRegressor(n_estimators=30, random_state=0, verbose=-1).fit(train_r, yr[:150])
export("lightgbm_regressor", onnxmltools.convert_lightgbm(lgbm_r, initial_types=features_r),
       rows_r, lgbm_r.predict(rows_r))

# PyTorch, through its own exporter: an MLP over the tabular rows and a small CNN over 1x8x8
# images (a query is one image, nested [1][8][8], or flat).
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3),
                          torch.nn.Softmax(dim=1)).eval()
cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                          torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10)).eval()
images = torch.randn(6, 1, 8, 8)
batch = torch.export.Dim("batch", min=1, max=4096)
for name, net, sample in (("pytorch_mlp", mlp, torch.from_numpy(rows)), ("pytorch_cnn", cnn, images)):
    # The exporter narrates each step on stdout and logs warnings: the tests' output stays clean.
    logging.disable(logging.WARNING)
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        program = torch.onnx.export(net, (sample,), input_names=["input"], output_names=["output"],
                                    dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    logging.disable(logging.NOTSET)
    with torch.no_grad():
        expected = net(sample).numpy()
    export(name, program.model_proto, sample.numpy(), expected)

# Refused at upload: an operator of a domain no runtime knows; a row of 2^31 values.
graph = helper.make_graph([helper.make_node("Frobnicate", ["X"], ["Y"], domain="com.example.nothing")],
                          "unknown_op", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])])
unknown = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                  helper.make_opsetid("com.example.nothing", 1)])
unknown.ir_version = 10  # the newest ONNX Runtime 1.22 reads: the operator must be the reason
write("unknown_op.onnx", unknown)
graph = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "huge",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1 << 31])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1 << 31])])
huge = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
huge.ir_version = 10
write("huge_shape.onnx", huge)
onnx.checker.check_model(huge)

json.dump({
    "exports": exports,
    "classifier_rows": rows.tolist(),
    "classifier_probabilities": classifier.predict_proba(rows).tolist(),
    "regressor_rows": rows_r.tolist(),
    "regressor_predictions": regressor.predict(rows_r).tolist(),
}, open(os.path.join(out, "expected.json"), "w"))
