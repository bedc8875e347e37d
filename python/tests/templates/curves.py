"""A template whose training reports a rising learning curve: `x · step / STEPS` at each of STEPS
steps, one every STEP_SECONDS, and `x` when evaluated — so a trial with a low `x` is behind the
others from its first reports on, and the time a full trial takes is known."""

import time

from duma.model import BaseModel, FloatKnob, logger

STEPS = 16
STEP_SECONDS = 0.25


class Curves(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"x": FloatKnob(0.0, 1.0)}

    def __init__(self, **knobs):
        self._x = knobs["x"]

    def train(self, dataset_path, shared_params=None, **train_args):
        for step in range(1, STEPS + 1):
            time.sleep(STEP_SECONDS)
            logger.report(self._x * step / STEPS, step=step)

    def evaluate(self, dataset_path):
        return self._x

    def predict(self, queries):
        return [self._x for _ in queries]

    def dump_parameters(self):
        return {"x": self._x}

    def load_parameters(self, params):
        self._x = float(params["x"])
