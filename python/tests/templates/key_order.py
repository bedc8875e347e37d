"""Answers each query with its keys, in the order the model received them."""

from duma.model import BaseModel, FixedKnob


class KeyOrder(BaseModel):
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
        return [list(query.keys()) for query in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
