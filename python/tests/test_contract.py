"""What a template's predictions may be: plain JSON values pass as they are, numpy values become
plain ones, and what JSON cannot carry is refused naming the prediction and the place in it."""

import math

import numpy as np
import pytest

from duma.model.contract import TemplateContractError, check_predictions, to_jsonable


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.25, 0.25),
        ([0.25, 0.75], [0.25, 0.75]),
        ([1, 0.5], [1, 0.5]),
        ("cat", "cat"),
        (3, 3),
        (True, True),
        (None, None),
        ((1.0, 2.0), [1.0, 2.0]),
        (np.float32(0.5), 0.5),
        (np.array([[1, 2]], dtype=np.int64), [[1, 2]]),
        ({"label": "cat", "p": np.float64(0.9)}, {"label": "cat", "p": 0.9}),
        ([], []),
    ],
)
def test_json_values_pass_and_numpy_values_become_plain(value, expected):
    converted = to_jsonable(value, "prediction 0")
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    "value, where",
    [
        (math.nan, "prediction 0 is nan"),
        (math.inf, "prediction 0 is inf"),
        ([0.5, -math.inf], "prediction 0[1] is -inf"),
        ([0.5, math.nan], "prediction 0[1] is nan"),
        (np.array([0.5, np.nan]), "prediction 0[1] is nan"),
        ({"p": [1.0, math.inf]}, "prediction 0['p'][1] is inf"),
        ({1: "a"}, "has key 1"),
        (object(), "is a `object`"),
    ],
)
def test_what_json_cannot_carry_is_refused_by_its_place(value, where):
    with pytest.raises(TemplateContractError, match=re_escape(where)):
        to_jsonable(value, "prediction 0")


def test_each_prediction_is_named_by_its_query():
    with pytest.raises(TemplateContractError, match=re_escape("prediction 2[0] is nan")):
        check_predictions([[0.5], [0.5], [math.nan]], 3)


def re_escape(text):
    import re

    return re.escape(text)
