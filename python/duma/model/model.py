"""Rafiki's ``BaseModel``: the class a Python model template extends."""

from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional, Union

import numpy as np

from .knob import KnobConfig, Knobs

# What dump_parameters returns (values may also be bytes, and lists and dicts of these).
Params = Dict[str, Union[str, int, float, bool, None, bytes, np.ndarray]]


class InvalidModelParamsException(Exception):
    """Raised by templates whose ``load_parameters`` gets parameters it cannot use."""


class InvalidModelClassError(Exception):
    """A template file or class that cannot be used as a model template."""


# What a template must implement; `destroy` and `teardown` are optional.
REQUIRED_METHODS = ("get_knob_config", "train", "evaluate", "predict", "dump_parameters", "load_parameters")


class BaseModel(abc.ABC):
    """The class Duma (and Rafiki) model templates extend.

    In ``__init__``, call ``super().__init__(**knobs)`` first, then build the model from the knob
    values, which the platform chooses from the space :meth:`get_knob_config` describes::

        def __init__(self, **knobs):
            super().__init__(**knobs)
            self.__dict__.update(knobs)
    """

    def __init__(self, **knobs: Knobs):
        pass

    @staticmethod
    @abc.abstractmethod
    def get_knob_config() -> KnobConfig:
        """The knob space: ``{knob name: knob}``."""
        raise NotImplementedError()

    @abc.abstractmethod
    def train(self, dataset_path: str, shared_params: Optional[Params] = None, **train_args):
        """Trains on the dataset file at ``dataset_path`` (format given by the task).
        ``shared_params`` are parameters of an earlier trial (``SHARE_PARAMS`` policy);
        ``train_args`` are the train job's extra arguments."""
        raise NotImplementedError()

    @abc.abstractmethod
    def evaluate(self, dataset_path: str) -> float:
        """The score on a validation dataset, higher is better (e.g. accuracy)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def predict(self, queries: List[Any]) -> List[Any]:
        """One JSON-serialisable prediction per query, in order."""
        raise NotImplementedError()

    @abc.abstractmethod
    def dump_parameters(self) -> Params:
        """The trained state as a dict of ``str``/``int``/``float``/``bool``/``None``/``bytes``/
        numpy arrays (and lists and dicts of those); saved without pickle (see ``duma.params``)."""
        raise NotImplementedError()

    @abc.abstractmethod
    def load_parameters(self, params: Params):
        """Restores the trained state :meth:`dump_parameters` produced, on an instance built
        with the same knobs."""
        raise NotImplementedError()

    def destroy(self):
        """Frees this instance's resources; no other method is called afterwards."""

    @staticmethod
    def teardown():
        """Class-wide clean-up, run once when the platform is done with the template."""


def missing_methods(model_class: type) -> List[str]:
    """The required methods ``model_class`` leaves unimplemented."""
    missing = []
    for name in REQUIRED_METHODS:
        attr = getattr(model_class, name, None)
        if attr is None or getattr(attr, "__isabstractmethod__", False):
            missing.append(name)
    return missing


def check_model_class(model_class) -> type:
    """Checks that ``model_class`` is a usable template class, with a message that says why not."""
    if not isinstance(model_class, type):
        raise InvalidModelClassError(f"{model_class!r} is not a class")
    if not issubclass(model_class, BaseModel):
        raise InvalidModelClassError(
            f"class `{model_class.__name__}` should extend BaseModel "
            "(`from duma.model import BaseModel`, or Rafiki's `from rafiki.model import BaseModel`)"
        )
    missing = missing_methods(model_class)
    if missing:
        raise InvalidModelClassError(
            f"class `{model_class.__name__}` does not implement {', '.join(missing)} "
            "(a template must define get_knob_config, train, evaluate, predict, dump_parameters "
            "and load_parameters)"
        )
    return model_class
