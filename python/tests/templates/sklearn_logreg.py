"""A scikit-learn template: it only imports when its declared dependency was installed."""

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from rafiki.model import BaseModel, FloatKnob, utils


class SkLogReg(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"C": FloatKnob(1e-2, 1e2, is_exp=True)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._clf = LogisticRegression(C=knobs["C"])

    @staticmethod
    def _xy(dataset_path):
        data = utils.dataset.load_dataset_of_tabular(dataset_path)
        return data.features_and_target(["f1", "f2"], "y")

    def train(self, dataset_path, shared_params=None, **train_args):
        utils.logger.log("sklearn " + sklearn.__version__)
        X, y = self._xy(dataset_path)
        self._clf.fit(X, y)

    def evaluate(self, dataset_path):
        X, y = self._xy(dataset_path)
        return float(self._clf.score(X, y))

    def predict(self, queries):
        X = np.array([[q["f1"], q["f2"]] for q in queries], dtype=float)
        return [list(p) for p in self._clf.predict_proba(X)]

    def dump_parameters(self):
        return {"coef": self._clf.coef_, "intercept": self._clf.intercept_, "classes": self._clf.classes_}

    def load_parameters(self, params):
        self._clf.coef_ = params["coef"]
        self._clf.intercept_ = params["intercept"]
        self._clf.classes_ = params["classes"]
