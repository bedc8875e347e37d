"""A template whose training never ends: the worker must kill it at the trial timeout."""

import time

from rafiki.model import BaseModel, FixedKnob


class Hang(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        time.sleep(3600)

    def evaluate(self, dataset_path):
        return 0.0

    def predict(self, queries):
        return [None for _ in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
