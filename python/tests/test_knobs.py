import json
import math
import random

import numpy as np
import pytest

from duma.model import (
    ArchKnob,
    CategoricalKnob,
    FixedKnob,
    FloatKnob,
    IntegerKnob,
    InvalidKnobError,
    KnobValue,
    PolicyKnob,
    coerce_knobs,
    complete_knobs,
    knob_config_from_json,
    knob_config_to_json,
    sample_knobs,
)


def sample_config():
    # The same knob config as the Rust test in common/src/domain/knobs.rs.
    return {
        "max_epochs": FixedKnob(10),
        "kernel": CategoricalKnob(["rbf", "linear"]),
        "depth": IntegerKnob(2, 16),
        "learning_rate": FloatKnob(1e-5, 1e-1, is_exp=True),
        "early_stop": PolicyKnob("EARLY_STOP"),
        "cells": ArchKnob([[1, 2], ["a", "b"]]),
    }


def test_knob_config_json_has_the_exact_rust_shape():
    assert knob_config_to_json(sample_config()) == {
        "max_epochs": {"type": "FixedKnob", "value": 10},
        "kernel": {"type": "CategoricalKnob", "values": ["rbf", "linear"]},
        "depth": {"type": "IntegerKnob", "min": 2, "max": 16, "is_exp": False},
        "learning_rate": {"type": "FloatKnob", "min": 1e-5, "max": 1e-1, "is_exp": True},
        "early_stop": {"type": "PolicyKnob", "policy": "EARLY_STOP"},
        "cells": {"type": "ArchKnob", "items": [[1, 2], ["a", "b"]]},
    }


def test_json_text_keeps_ints_and_floats_apart():
    text = json.dumps(knob_config_to_json({"f": FloatKnob(0, 1), "i": IntegerKnob(0, 1), "x": FixedKnob(2.0)}))
    assert '"f": {"type": "FloatKnob", "min": 0.0, "max": 1.0, "is_exp": false}' in text
    assert '"i": {"type": "IntegerKnob", "min": 0, "max": 1, "is_exp": false}' in text
    assert '"x": {"type": "FixedKnob", "value": 2.0}' in text


def test_every_policy_serialises():
    for policy in ["EARLY_STOP", "SHARE_PARAMS", "SKIP_TRAIN", "QUICK_EVAL", "DOWNSCALE"]:
        assert PolicyKnob(policy).to_json() == {"type": "PolicyKnob", "policy": policy}


def test_knob_config_round_trips_through_json():
    config = sample_config()
    assert knob_config_from_json(json.loads(json.dumps(knob_config_to_json(config)))) == config


def test_knob_values_are_unwrapped_and_numpy_scalars_accepted():
    assert CategoricalKnob([KnobValue(1), KnobValue(2)]).to_json()["values"] == [1, 2]
    assert FixedKnob(np.int64(3)).to_json() == {"type": "FixedKnob", "value": 3}
    assert ArchKnob([[KnobValue("conv"), "pool"]]).items == [["conv", "pool"]]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: CategoricalKnob([]), "at least one value"),
        (lambda: CategoricalKnob([1, "a"]), "same type"),
        (lambda: CategoricalKnob([True, 1]), "same type"),
        (lambda: FixedKnob(None), "only `int`"),
        (lambda: FixedKnob([1, 2]), "only `int`"),
        (lambda: FixedKnob(float("nan")), "not finite"),
        (lambda: FixedKnob(2**70), "64-bit"),
        (lambda: IntegerKnob(5, 1), "at least `value_min`"),
        (lambda: IntegerKnob(1.5, 3), "should be an `int`"),
        (lambda: IntegerKnob(True, 3), "should be an `int`"),
        (lambda: IntegerKnob(0, 8, is_exp=True), "value_min > 0"),
        (lambda: FloatKnob(0.0, 1.0, is_exp=True), "value_min > 0"),
        (lambda: FloatKnob(0.0, float("inf")), "finite"),
        (lambda: FloatKnob("0", 1), "`float` or `int`"),
        (lambda: PolicyKnob("EARLY_STOPPING"), "one of"),
        (lambda: ArchKnob([]), "at least one item"),
        (lambda: ArchKnob([[1], []]), "item 1"),
        (lambda: ArchKnob([1, 2]), "item 0"),
    ],
)
def test_invalid_knobs_are_refused_with_a_reason(make, reason):
    with pytest.raises(InvalidKnobError, match=reason):
        make()


def test_invalid_knob_configs_are_refused():
    with pytest.raises(InvalidKnobError, match="dict of knob name"):
        knob_config_to_json([FixedKnob(1)])
    with pytest.raises(InvalidKnobError, match="not a knob"):
        knob_config_to_json({"a": 5})
    with pytest.raises(InvalidKnobError, match="identifier"):
        knob_config_to_json({"not valid": FixedKnob(1)})


def test_concrete_knobs_are_checked_and_coerced():
    config = sample_config()
    knobs = {"max_epochs": 10, "kernel": "rbf", "depth": 3, "learning_rate": 0.001, "early_stop": True, "cells": [2, "a"]}
    assert coerce_knobs(config, knobs) == knobs
    with pytest.raises(InvalidKnobError, match="outside its space"):
        coerce_knobs(config, {**knobs, "depth": 17})
    with pytest.raises(InvalidKnobError, match="outside its space"):
        coerce_knobs(config, {**knobs, "early_stop": 1})
    with pytest.raises(InvalidKnobError, match="outside its space"):
        coerce_knobs(config, {**knobs, "cells": [3, "a"]})
    with pytest.raises(InvalidKnobError, match="have no value"):
        coerce_knobs(config, {k: v for k, v in knobs.items() if k != "depth"})
    with pytest.raises(InvalidKnobError, match="not in the knob config"):
        coerce_knobs(config, {**knobs, "extra": 1})


def test_a_checkpoints_knobs_are_completed_with_fixed_values_and_policies_off():
    config = sample_config()
    chosen = {"kernel": "linear", "depth": 4, "learning_rate": 0.01, "cells": [2, "a"]}
    completed = complete_knobs(config, chosen)
    assert completed == {**chosen, "max_epochs": 10, "early_stop": False}
    assert coerce_knobs(config, completed) == completed
    # What the user gave wins; what needs choosing stays missing for coerce_knobs to name.
    assert complete_knobs(config, {"early_stop": True})["early_stop"] is True
    with pytest.raises(InvalidKnobError, match="depth"):
        coerce_knobs(config, complete_knobs(config, {k: v for k, v in chosen.items() if k != "depth"}))


def test_float_knob_values_arrive_as_floats():
    config = {"lr": FloatKnob(0, 2), "n": IntegerKnob(0, 5)}
    coerced = coerce_knobs(config, {"lr": 1, "n": 3.0})
    assert coerced == {"lr": 1.0, "n": 3}
    assert type(coerced["lr"]) is float and type(coerced["n"]) is int


def test_sampling_stays_in_space_and_respects_log_scale():
    config = sample_config()
    rng = random.Random(7)
    for _ in range(200):
        knobs = sample_knobs(config, rng)
        coerce_knobs(config, knobs)
        assert knobs["early_stop"] is False
    # On a log scale half the samples of [1e-5, 1e-1] fall below 1e-3; uniformly, ~1% would.
    lrs = [FloatKnob(1e-5, 1e-1, is_exp=True).sample(rng) for _ in range(2000)]
    below = sum(lr < 1e-3 for lr in lrs) / len(lrs)
    assert 0.4 < below < 0.6
    ints = [IntegerKnob(1, 1024, is_exp=True).sample(rng) for _ in range(2000)]
    assert all(1 <= i <= 1024 for i in ints)
    assert 0.4 < sum(i <= 32 for i in ints) / len(ints) < 0.6
    assert all(math.isfinite(x) for x in lrs)
