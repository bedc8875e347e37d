import numpy as np
import pytest

from duma.model import InvalidModelClassError, logger
from duma.model.contract import TemplateContractError
from duma.model.dev import test_model_class as check_template
from duma.model.log import logging_sink
from helpers import template, write_blobs_csv


@pytest.fixture
def data(tmp_path):
    return write_blobs_csv(tmp_path / "train.csv", seed=1), write_blobs_csv(tmp_path / "val.csv", seed=2)


def test_a_numpy_template_passes_and_reports(data, capsys):
    train, val = data
    queries = [{"x1": 0.0, "x2": 0.1}, {"x1": 3.1, "x2": 2.9}]
    predictions, model = check_template(
        template("rafiki_centroid.py"),
        "RafikiCentroid",
        "TABULAR_CLASSIFICATION",
        {"numpy": ""},
        train,
        val,
        queries=queries,
        train_args={"features": ["x1", "x2"], "target": "y"},
        trials=3,
        seed=3,
    )
    assert len(predictions) == 2
    assert all(isinstance(p, list) and len(p) == 2 for p in predictions)
    assert predictions[0][0] > 0.5 and predictions[1][1] > 0.5
    assert model.predict([queries[0]])[0].shape == (2,)
    out = capsys.readouterr().out
    assert "knob config:" in out and '"temperature": {"type": "FloatKnob"' in out
    assert out.count("score on validation dataset") == 3
    assert "[log] plot `Loss Over Epochs`" in out
    assert "No errors encountered" in out
    assert logger.sink is logging_sink  # the echo sink is removed afterwards


def test_fixed_knobs_and_budget(data, capsys):
    train, val = data
    check_template(
        template("rafiki_centroid.py"), "RafikiCentroid", "TABULAR_CLASSIFICATION", None, train, val,
        train_args={"features": ["x1", "x2"]}, budget={"MODEL_TRIAL_COUNT": 1}, knobs={"epochs": 2, "metric": "manhattan"},
    )
    out = capsys.readouterr().out
    assert "Trial 1/1" in out and "'metric': 'manhattan'" in out and "'epochs': 2" in out


def test_missing_dependencies_are_reported(data, capsys):
    train, val = data
    check_template(template("singa_mean.py"), "SingaMean", "TABULAR_REGRESSION",
                   {"surely-not-installed-pkg": "1.0"}, train, val, trials=1)
    assert "`surely-not-installed-pkg` is not installed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "cls, error, reason",
    [
        ("Empty", InvalidModelClassError, "does not implement get_knob_config, train, evaluate"),
        ("NotAModel", InvalidModelClassError, "should extend BaseModel"),
        ("Missing", InvalidModelClassError, "no class `Missing`; it defines"),
        ("NanScore", TemplateContractError, "finite"),
        ("StringScore", TemplateContractError, "float score, not `str`"),
        ("ObjectPredictions", TemplateContractError, "prediction 0 is a `object`"),
        ("ObjectParams", Exception, "dtype `object`"),
        ("TrainRaises", ValueError, "no rows"),
    ],
)
def test_broken_templates_fail_with_clear_errors(data, cls, error, reason):
    train, val = data
    with pytest.raises(error, match=reason):
        check_template(template("broken_models.py"), cls, "TASK", {}, train, val, queries=[{}], trials=1)


def test_syntax_errors_are_reported(data):
    train, val = data
    with pytest.raises(InvalidModelClassError, match="syntax error"):
        check_template(template("syntax_error.py"), "Broken", "TASK", {}, train, val)
