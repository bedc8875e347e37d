"""A template with Rafiki's SHARE_PARAMS policy: it records whether the platform set the policy and
which parameters its training started from (the `x` of the trial they came from); its score is
its own `x`, so the best earlier trial is known."""

from duma.model import BaseModel, FloatKnob, PolicyKnob, logger


class SharesParams(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"x": FloatKnob(0.0, 1.0), "share": PolicyKnob("SHARE_PARAMS")}

    def __init__(self, **knobs):
        self._x = knobs["x"]
        self._share = knobs["share"]

    def train(self, dataset_path, shared_params=None, **train_args):
        started_from = -1.0 if shared_params is None else float(shared_params["x"])
        logger.log(share=1.0 if self._share else 0.0, started_from=started_from)

    def evaluate(self, dataset_path):
        return self._x

    def predict(self, queries):
        return [self._x for _ in queries]

    def dump_parameters(self):
        return {"x": self._x}

    def load_parameters(self, params):
        self._x = float(params["x"])
