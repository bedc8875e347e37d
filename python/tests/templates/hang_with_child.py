"""A template whose training starts a process of its own and then never ends: killing the trial
must kill that process too. The child's command line carries `train_args["marker"]`, so a test can
find it from outside the sandbox; the template logs once the child runs."""

import subprocess
import sys
import time

from rafiki.model import BaseModel, FixedKnob


class HangWithChild(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"k": FixedKnob(1)}

    def __init__(self, **knobs):
        super().__init__(**knobs)

    def train(self, dataset_path, shared_params=None, **train_args):
        marker = train_args["marker"]
        subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(3600) # {marker}"])
        time.sleep(3600)

    def evaluate(self, dataset_path):
        return 0.0

    def predict(self, queries):
        return [None for _ in queries]

    def dump_parameters(self):
        return {}

    def load_parameters(self, params):
        pass
