"""Trains fine, but its saved parameters cannot be loaded back: serving it must fail clearly."""

from rafiki.model import BaseModel, FixedKnob


class LoadFails(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        pass

    def evaluate(self, dataset_path):
        return 0.5

    def predict(self, queries):
        return [0 for _ in queries]

    def dump_parameters(self):
        return {"version": 1}

    def load_parameters(self, params):
        raise ValueError("these parameters are from another version of the template")
