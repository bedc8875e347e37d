"""A template with every Rafiki policy knob: it logs which the platform set, and which parameters
a SKIP_TRAIN trial evaluated (the `x` of the trial they were shared from). Its score is its `x`,
or that shared `x` when it skipped training; halved under QUICK_EVAL."""

from duma.model import BaseModel, FloatKnob, PolicyKnob, logger


class Policies(BaseModel):
    @staticmethod
    def get_knob_config():
        return {
            "x": FloatKnob(0.0, 1.0),
            "early": PolicyKnob("EARLY_STOP"),
            "quick": PolicyKnob("QUICK_EVAL"),
            "small": PolicyKnob("DOWNSCALE"),
            "skip": PolicyKnob("SKIP_TRAIN"),
            "share": PolicyKnob("SHARE_PARAMS"),
        }

    def __init__(self, **knobs):
        self._knobs = knobs
        self._x = knobs["x"]

    def train(self, dataset_path, shared_params=None, **train_args):
        if self._knobs["skip"]:
            if shared_params is None:
                raise ValueError("SKIP_TRAIN set without shared parameters")
            self._x = float(shared_params["x"])
        flags = {name: 1.0 if self._knobs[name] else 0.0 for name in ["early", "quick", "small", "skip", "share"]}
        logger.log(started_from=-1.0 if shared_params is None else float(shared_params["x"]), **flags)

    def evaluate(self, dataset_path):
        return self._x / 2 if self._knobs["quick"] else self._x

    def predict(self, queries):
        return [self._x for _ in queries]

    def dump_parameters(self):
        return {"x": self._x}

    def load_parameters(self, params):
        self._x = float(params["x"])
