"""Duma's model SDK, with Rafiki's names: ``BaseModel``, the six knob types, ``utils.logger`` and
``utils.dataset``."""

from .dataset import DatasetUtils, InvalidDatasetFormatException
from .knob import (
    POLICIES,
    ArchKnob,
    BaseKnob,
    CategoricalKnob,
    CategoricalValue,
    FixedKnob,
    FloatKnob,
    IntegerKnob,
    InvalidKnobError,
    KnobConfig,
    Knobs,
    KnobValue,
    PolicyKnob,
    coerce_knobs,
    complete_knobs,
    knob_config_from_json,
    knob_config_to_json,
    sample_knobs,
)
from .log import LoggerUtils, LogRecord, LogType
from .model import BaseModel, InvalidModelClassError, InvalidModelParamsException, Params
from . import utils
from .utils import dataset, dataset_utils, load_model_class, logger


def test_model_class(*args, **kwargs):
    """See :func:`duma.model.dev.test_model_class` (imported lazily)."""
    from .dev import test_model_class as run

    return run(*args, **kwargs)


# Not a test for pytest to collect when a test module imports it.
test_model_class.__test__ = False

__all__ = [
    "ArchKnob", "BaseKnob", "BaseModel", "CategoricalKnob", "CategoricalValue", "DatasetUtils",
    "FixedKnob", "FloatKnob", "IntegerKnob", "InvalidDatasetFormatException", "InvalidKnobError",
    "InvalidModelClassError", "InvalidModelParamsException", "KnobConfig", "KnobValue", "Knobs",
    "LogRecord", "LogType", "LoggerUtils", "POLICIES", "Params", "PolicyKnob", "coerce_knobs", "complete_knobs",
    "dataset", "dataset_utils", "knob_config_from_json", "knob_config_to_json", "load_model_class",
    "logger", "sample_knobs", "test_model_class", "utils",
]
