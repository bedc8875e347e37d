"""A SINGA-Auto-style template: predicts the training target's mean (regression)."""

import numpy as np

from singa_auto.model import BaseModel, FixedKnob, logger
from singa_auto.model.utils import dataset


class SingaMean(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"shift": FixedKnob(0.0)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self.shift = knobs["shift"]
        self.mean = None

    def train(self, dataset_path, shared_params=None, **train_args):
        y = dataset.load_dataset_of_tabular(dataset_path).numeric_column(train_args.get("target", "y"))
        self.mean = float(np.mean(y)) + self.shift
        logger.log(mean=self.mean)

    def evaluate(self, dataset_path):
        _, y = dataset.load_tabular_features_and_target(dataset_path, features=["x1"], target="y")
        return np.float64(-np.mean((y - self.mean) ** 2))

    def predict(self, queries):
        return [self.mean for _ in queries]

    def dump_parameters(self):
        return {"mean": self.mean}

    def load_parameters(self, params):
        self.mean = params["mean"]
