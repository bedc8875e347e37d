"""Templates that go wrong in the ways the runner must report clearly."""

import sys

import numpy as np

from duma.model import BaseModel, FixedKnob


class _Fine(BaseModel):
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
        return {}

    def load_parameters(self, params):
        pass


class Empty(BaseModel):
    pass


class NotAModel:
    pass


class TrainRaises(_Fine):
    def train(self, dataset_path, shared_params=None, **train_args):
        raise ValueError("the dataset has no rows")


class NanScore(_Fine):
    def evaluate(self, dataset_path):
        return float("nan")


class StringScore(_Fine):
    def evaluate(self, dataset_path):
        return "0.9"


class ObjectPredictions(_Fine):
    def predict(self, queries):
        return [object() for _ in queries]


class WrongCount(_Fine):
    def predict(self, queries):
        return [1]


class ObjectParams(_Fine):
    def dump_parameters(self):
        return {"weights": np.array([{"a": 1}, None], dtype=object)}


class ReadsStdin(_Fine):
    def train(self, dataset_path, shared_params=None, **train_args):
        data = sys.stdin.read()
        if data:
            raise AssertionError(f"the template read protocol bytes: {data!r}")


class Exits(_Fine):
    def train(self, dataset_path, shared_params=None, **train_args):
        sys.exit(3)


class BadKnobConfig(_Fine):
    @staticmethod
    def get_knob_config():
        return {"k": 5}


class BigPredictions(_Fine):
    def predict(self, queries):
        return [list(range(1000)) for _ in queries]


class RecordsShared(_Fine):
    seen = None

    def train(self, dataset_path, shared_params=None, **train_args):
        from duma.model import logger

        logger.log(shared=float(shared_params["w"][0]) if shared_params else -1.0, extra=train_args.get("extra", 0))


class OldStyleTrain(_Fine):
    """Rafiki 0.2 templates take no `shared_params`."""

    def train(self, dataset_uri):
        from duma.model import logger

        logger.log("old style")


class Chatty(_Fine):
    """Prints and logs while it trains and evaluates, as Rafiki templates did."""

    def train(self, dataset_path, shared_params=None, **train_args):
        import logging

        print("epoch 1", "loss 0.5")
        logging.getLogger("chatty").info("halfway")
        print("no newline yet", end="")
        print(" ... done")
        logging.warning("careful")
        print("x" * 3000)
        for i in range(6000):
            print(f"line {i}")

    def evaluate(self, dataset_path):
        print("evaluating")
        return 0.5
