"""Test functions as ordinary Duma templates, for `scripts/bench-tuning`: the score is minus the
function (the platform maximises scores), so the regret of a job is `-best score - global min`."""

import math

from duma.model import BaseModel, FloatKnob


class TestFunction(BaseModel):
    """A template with nothing to train: its knobs are the point, its score minus the function."""

    def train(self, dataset_path, shared_params=None, **train_args):
        pass

    def predict(self, queries):
        return [0.0 for _ in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass


class Branin(TestFunction):
    """Branin on [-5, 10] x [0, 15]; global minimum 0.397887."""

    @staticmethod
    def get_knob_config():
        return {"x1": FloatKnob(-5.0, 10.0), "x2": FloatKnob(0.0, 15.0)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self.x1, self.x2 = knobs["x1"], knobs["x2"]

    def evaluate(self, dataset_path):
        b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
        value = (self.x2 - b * self.x1**2 + c * self.x1 - 6) ** 2 + 10 * (1 - t) * math.cos(self.x1) + 10
        return -value


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def hartmann6(x):
    return -sum(
        ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i in range(4)
    )


class Hartmann6(TestFunction):
    """Hartmann6 on [0, 1]^6; global minimum -3.32237."""

    @staticmethod
    def get_knob_config():
        return {f"x{i}": FloatKnob(0.0, 1.0) for i in range(1, 7)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self.x = [knobs[f"x{i}"] for i in range(1, 7)]

    def evaluate(self, dataset_path):
        return -hartmann6(self.x)
