"""Reports the environment variables the runner's process sees (it must see no platform secret)."""

import os

from rafiki.model import BaseModel, FixedKnob


class EnvProbe(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        pass

    def evaluate(self, dataset_path):
        return 0.0

    def predict(self, queries):
        return [sorted(os.environ) for _ in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
