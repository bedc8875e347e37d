"""A Rafiki-style template that imports what Rafiki's worker image always had — pandas,
scikit-learn, Pillow, requests, tqdm — and the runner's JSON codec (orjson), without declaring any
dependency. It builds DataFrames from the query dicts as they come, so a query whose keys were
re-ordered on the way fails in scikit-learn's feature-name check."""

import pickle

import numpy as np
import orjson  # noqa: F401
import pandas as pd
import PIL
import requests  # noqa: F401
import tqdm  # noqa: F401
from PIL import Image
from sklearn.tree import DecisionTreeClassifier

from rafiki.model import BaseModel, IntegerKnob


class BaseEnvTree(BaseModel):
    @staticmethod
    def get_knob_config():
        return {"max_depth": IntegerKnob(1, 4)}

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._max_depth = knobs["max_depth"]
        self._tree = None

    def train(self, dataset_path, shared_params=None, **train_args):
        frame = pd.read_csv(dataset_path)
        features = frame.drop(columns=["y"])
        # Pillow really works here: a thumbnail of the feature matrix, as image templates do.
        thumbnail = Image.fromarray(np.uint8(features.abs().to_numpy() * 10 % 256)).resize((4, 4))
        assert thumbnail.size == (4, 4), PIL.__version__
        self._tree = DecisionTreeClassifier(max_depth=self._max_depth, random_state=0)
        self._tree.fit(features, frame["y"])

    def evaluate(self, dataset_path):
        frame = pd.read_csv(dataset_path)
        return float(self._tree.score(frame.drop(columns=["y"]), frame["y"]))

    def predict(self, queries):
        # Column order is the order of the query's keys: it must be the training order.
        return [int(label) for label in self._tree.predict(pd.DataFrame(queries))]

    def dump_parameters(self):
        # A template's own business; Duma's wire and storage never unpickle.
        return {"tree": pickle.dumps(self._tree)}

    def load_parameters(self, params):
        self._tree = pickle.loads(params["tree"])
