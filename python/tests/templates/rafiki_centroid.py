"""A Rafiki-style template (unchanged Rafiki imports): nearest-centroid classification with a
softmax over negative distances, numpy only. It prints to stdout and writes to fd 1 on purpose:
the runner must keep its protocol channel clean anyway."""

import os

import numpy as np

from rafiki.model import BaseModel, CategoricalKnob, FixedKnob, FloatKnob, IntegerKnob, PolicyKnob, utils
from rafiki.constants import ModelDependency  # noqa: F401  (Rafiki templates import it)
from rafiki.model.dev import test_model_class  # noqa: F401


class RafikiCentroid(BaseModel):
    @staticmethod
    def get_knob_config():
        return {
            "temperature": FloatKnob(1e-2, 10.0, is_exp=True),
            "epochs": IntegerKnob(1, 3),
            "metric": CategoricalKnob(["euclidean", "manhattan"]),
            "max_rows": FixedKnob(10_000),
            "quick_eval": PolicyKnob("QUICK_EVAL"),
        }

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._knobs = knobs
        self._centroids = None
        self._classes = None
        self._features = None

    def train(self, dataset_path, shared_params=None, features=None, target="y", **train_args):
        print("this print must not corrupt the protocol")
        os.write(1, b"neither must this raw write to fd 1\n")
        utils.logger.define_loss_plot()
        utils.logger.log("training on " + os.path.basename(dataset_path))
        data = utils.dataset.load_dataset_of_tabular(dataset_path)
        X, y = data.features_and_target(features, target)
        self._features = features or [c for c in data.columns if c != target]
        self._classes = np.unique(y)
        for epoch in range(self._knobs["epochs"]):
            self._centroids = np.stack([np.nanmean(X[y == c], axis=0) for c in self._classes])
            utils.logger.log_loss(loss=np.float32(1.0 / (epoch + 1)), epoch=epoch)

    def _proba(self, X):
        diff = X[:, None, :] - self._centroids[None, :, :]
        if self._knobs["metric"] == "euclidean":
            dist = np.sqrt((diff**2).sum(axis=2))
        else:
            dist = np.abs(diff).sum(axis=2)
        logits = -dist / self._knobs["temperature"]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def evaluate(self, dataset_path):
        data = utils.dataset.load_dataset_of_tabular(dataset_path)
        X, y = data.features_and_target(self._features, "y")
        accuracy = float(np.mean(self._classes[self._proba(X).argmax(axis=1)] == y))
        utils.logger.log(accuracy=accuracy)
        return accuracy

    def predict(self, queries):
        X = utils.dataset.tabular_queries_to_array(queries, self._features)
        return list(self._proba(X))  # numpy arrays: the runner converts them

    def dump_parameters(self):
        return {
            "centroids": self._centroids,
            "classes": self._classes,
            "features": self._features,
            "meta": {"epochs": self._knobs["epochs"], "note": None},
        }

    def load_parameters(self, params):
        self._centroids = params["centroids"]
        self._classes = params["classes"]
        self._features = params["features"]
