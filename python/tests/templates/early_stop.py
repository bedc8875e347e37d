"""A template with Rafiki's EARLY_STOP policy: an early-stopped training scores half of what a
full one does (its score is `x`, or `x / 2` stopped early), so the platform's final-train trial —
the best knobs, trained in full — is told apart by its score."""

from duma.model import BaseModel, FloatKnob, PolicyKnob, logger


class EarlyStop(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"x": FloatKnob(0.0, 1.0), "early": PolicyKnob("EARLY_STOP")}

    def __init__(self, **knobs):
        self._x = knobs["x"]
        self._early = knobs["early"]

    def train(self, dataset_path, shared_params=None, **train_args):
        logger.log(early=1.0 if self._early else 0.0)

    def evaluate(self, dataset_path):
        return self._x / 2 if self._early else self._x

    def predict(self, queries):
        return [self._x for _ in queries]

    def dump_parameters(self):
        return {"x": self._x}

    def load_parameters(self, params):
        self._x = float(params["x"])
