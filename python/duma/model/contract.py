"""Checks on what a template returns, shared by the runner and ``test_model_class``: scores are
finite floats, predictions are one JSON value per query."""

from __future__ import annotations

import math
import numbers
from typing import Any, List

import numpy as np


class TemplateContractError(Exception):
    """A template method returned something the platform cannot use."""


def check_score(score) -> float:
    """``evaluate()``'s result as a finite float (ints and numpy numbers are accepted)."""
    if isinstance(score, np.ndarray) and score.shape == ():
        score = score.item()
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TemplateContractError(
            f"evaluate() should return a float score, not `{type(score).__name__}` ({score!r:.80})"
        )
    score = float(score)
    if not math.isfinite(score):
        raise TemplateContractError(f"evaluate() returned {score}; the score must be a finite number")
    return score


def to_jsonable(value: Any, where: str) -> Any:
    """``value`` with numpy scalars and arrays, and tuples, turned into plain JSON values.
    Fails naming ``where`` for NaN/infinity, non-string keys and objects JSON cannot hold."""
    # What predictions mostly are (a label, a score, a row of probabilities), checked without the
    # general walk below: it runs for every query served.
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # NaN and ±infinity fail this
            return value
    elif kind is str or kind is int or kind is bool or value is None:
        return value
    elif kind is list and all(type(v) is float and v - v == 0.0 for v in value):
        return value
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value.tolist())]
        return to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise TemplateContractError(f"{where} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TemplateContractError(f"{where} has key {k!r}; JSON object keys must be strings")
            out[str(k)] = to_jsonable(v, f"{where}[{k!r}]")
        return out
    raise TemplateContractError(
        f"{where} is a `{type(value).__name__}`, which is not JSON-serialisable "
        "(return lists, dicts, strings, numbers, bools, None or numpy values)"
    )


def check_predictions(predictions, queries_count: int) -> List[Any]:
    """``predict()``'s result as a list of JSON values, one per query."""
    if isinstance(predictions, np.ndarray):
        predictions = list(predictions) if predictions.ndim > 0 else [predictions]
    if not isinstance(predictions, (list, tuple)):
        raise TemplateContractError(
            f"predict() should return a list of predictions, not `{type(predictions).__name__}`"
        )
    if len(predictions) != queries_count:
        raise TemplateContractError(
            f"predict() returned {len(predictions)} predictions for {queries_count} queries; "
            "it must return one prediction per query, in order"
        )
    return [to_jsonable(p, f"prediction {i}") for i, p in enumerate(predictions)]


def call_train(model, dataset_path: str, shared_params, train_args) -> None:
    """``model.train(dataset_path, shared_params=..., **train_args)``, leaving out
    ``shared_params`` when it is ``None`` and the template's ``train`` does not take it (Rafiki
    0.2 templates: ``def train(self, dataset_uri)``)."""
    if shared_params is None and not _accepts_keyword(model.train, "shared_params"):
        model.train(dataset_path, **train_args)
    else:
        model.train(dataset_path, shared_params=shared_params, **train_args)


def _accepts_keyword(function, name: str) -> bool:
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind == p.VAR_KEYWORD or (p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        for p in parameters
    )
