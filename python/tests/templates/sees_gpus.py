"""A template that logs which GPUs its process was given (`CUDA_VISIBLE_DEVICES`) and which
NVIDIA device nodes it can see, so tests can check what a trial asking for GPUs gets."""

import os

from duma.model import BaseModel, FloatKnob, logger


class SeesGpus(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"x": FloatKnob(0.0, 1.0)}

    def __init__(self, **knobs):
        self._x = knobs["x"]

    def train(self, dataset_path, shared_params=None, **train_args):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        nodes = sorted(n for n in os.listdir("/dev") if n.startswith("nvidia"))
        logger.log(f"CUDA_VISIBLE_DEVICES={visible} nodes={','.join(nodes) or '<none>'}")

    def evaluate(self, dataset_path):
        return self._x

    def predict(self, queries):
        return [self._x for _ in queries]

    def dump_parameters(self):
        return {"x": self._x}

    def load_parameters(self, params):
        self._x = float(params["x"])
