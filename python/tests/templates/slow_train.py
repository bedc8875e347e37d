"""Trains for a fixed while, so trials that run at the same time overlap visibly."""

import time

from duma.model import BaseModel, IntegerKnob


class SlowTrain(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": IntegerKnob(1, 100)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        time.sleep(1.5)

    def evaluate(self, dataset_path):
        return 1.0

    def predict(self, queries):
        return [0 for _ in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
