"""A Rafiki-style image classifier (Rafiki's imports, unchanged): a scikit-learn decision tree
on grayscale pixels, trained on an image zip through the dataset helpers. It declares no
dependency: scikit-learn, numpy and Pillow come from the base environment, as they came from
Rafiki's worker image. Like Rafiki's own examples, it keeps its fitted estimator as a pickled,
base64-encoded string among its parameters (unpickled only inside its own sandbox)."""

import base64
import pickle

import numpy as np
from PIL import Image
from sklearn.tree import DecisionTreeClassifier

from rafiki.model import BaseModel, CategoricalKnob, FixedKnob, IntegerKnob, utils


class RafikiImageTree(BaseModel):
    @staticmethod
    def get_knob_config():
        return {
            "max_depth": IntegerKnob(2, 8),
            "criterion": CategoricalKnob(["gini", "entropy"]),
            "max_image_size": FixedKnob(16),
        }

    def __init__(self, **knobs):
        super().__init__(**knobs)
        self._knobs = knobs
        self._clf = None
        self._image_size = None

    def train(self, dataset_path, shared_params=None, **train_args):
        dataset = utils.dataset.load_dataset_of_image_files(
            dataset_path, max_image_size=self._knobs["max_image_size"], mode="L")
        self._image_size = dataset.image_size
        images, classes = zip(*[(image, image_class) for image, image_class in dataset])
        utils.logger.log(f"{len(images)} images of {self._image_size}x{self._image_size}, "
                         f"{dataset.classes} classes (Pillow {Image.__version__})")
        self._clf = DecisionTreeClassifier(max_depth=self._knobs["max_depth"],
                                           criterion=self._knobs["criterion"], random_state=0)
        self._clf.fit(self._features(images), np.array(classes))

    def evaluate(self, dataset_path, **kwargs):
        dataset = utils.dataset.load_dataset_of_image_files(
            dataset_path, max_image_size=self._image_size, mode="L")
        images, classes = zip(*[(image, image_class) for image, image_class in dataset])
        return float(np.mean(self._clf.predict(self._features(images)) == np.array(classes)))

    def predict(self, queries):
        # Queries are images as nested lists, H x W (grayscale) or H x W x C.
        images = utils.dataset.transform_images(queries, image_size=self._image_size, mode="L")
        return [p.tolist() for p in self._clf.predict_proba(self._features(images))]

    def dump_parameters(self):
        return {"clf_base64": base64.b64encode(pickle.dumps(self._clf)).decode("ascii"),
                "image_size": self._image_size}

    def load_parameters(self, params):
        self._clf = pickle.loads(base64.b64decode(params["clf_base64"]))
        self._image_size = params["image_size"]

    @staticmethod
    def _features(images):
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
