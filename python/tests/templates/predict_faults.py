"""Serves a number doubled; the query "hang" never returns and "exit" kills the runner, as a
buggy or hostile model would; "slow" takes 1.5 s, as a heavy model does."""

import os
import time

from duma.model import BaseModel, FixedKnob


class PredictFaults(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        pass

    def evaluate(self, dataset_path):
        return 1.0

    def predict(self, queries):
        if "hang" in queries:
            time.sleep(3600)
        if "slow" in queries:
            time.sleep(1.5)
            return [0 if query == "slow" else 2 * query for query in queries]
        if "exit" in queries:
            os._exit(3)
        return [2 * query for query in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
