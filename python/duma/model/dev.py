"""Local checks for template authors (Rafiki's ``rafiki.model.dev.test_model_class``).

``test_model_class`` runs a template through the calls the platform makes, in this process and
with the platform's own checks: knob config → JSON, knobs sampled from it (log scale respected),
``train``, ``evaluate`` (a finite float), ``dump_parameters`` saved and loaded through
``duma.params`` into a fresh instance, ``predict`` (one JSON value per query), ``destroy`` and
``teardown``. It prints a short report and returns ``(predictions, model)`` like Rafiki's.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from typing import Any, Dict, List, Optional

from .. import params as params_format
from .contract import call_train, check_predictions, check_score
from .knob import coerce_knobs, knob_config_to_json, sample_knobs, validate_knob_config
from .log import ListSink, LogRecord, LogType
from .utils import load_model_class, logger


class _EchoSink(ListSink):
    """Keeps records and prints them, so authors see their logs as training runs."""

    def __call__(self, record: LogRecord) -> None:
        super().__call__(record)
        p = record.payload
        if record.kind == LogType.MESSAGE:
            line = p["message"]
        elif record.kind == LogType.METRICS:
            line = ", ".join(f"{k}={v}" for k, v in p.items())
        else:
            line = f"plot `{p['title']}`: {', '.join(p['metrics'])} against {p['x_axis'] or 'time'}"
        print(f"  [log] {line}")


def _check_dependencies(dependencies: Optional[Dict[str, str]]) -> List[str]:
    from importlib import metadata

    warnings = []
    for name, version in (dependencies or {}).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            warnings.append(f"dependency `{name}` is not installed here")
            continue
        wanted = str(version or "").lstrip("=")
        if wanted and not any(wanted.startswith(op) for op in "<>!~") and installed != wanted:
            warnings.append(f"dependency `{name}`: {installed} is installed, the model asks for {version}")
    return warnings


def _header(text: str) -> None:
    print(f"\n== {text}")


def test_model_class(
    model_file_path: str,
    model_class: str,
    task: str,
    dependencies: Optional[Dict[str, str]],
    train_dataset_path: str,
    val_dataset_path: str,
    queries: Optional[List[Any]] = None,
    train_args: Optional[Dict[str, Any]] = None,
    trials: int = 2,
    *,
    test_dataset_path: Optional[str] = None,
    budget: Optional[Dict[str, Any]] = None,
    knobs: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
):
    """Checks a template locally the way Duma will run it; raises at the first problem.

    :param model_file_path: the template's ``.py`` file
    :param model_class: the name of its ``BaseModel`` subclass
    :param task: the task, e.g. ``IMAGE_CLASSIFICATION`` (reported; the checks are task-agnostic)
    :param dependencies: ``{package: version}``; reported when missing here, never installed
    :param train_dataset_path: / :param val_dataset_path: dataset files in the task's format
    :param queries: queries to predict after training (skipped when ``None``)
    :param train_args: extra keyword arguments for ``train``
    :param trials: how many knob samples to try (``budget['MODEL_TRIAL_COUNT']`` overrides)
    :param test_dataset_path: also evaluate the best trial's reloaded model on this dataset
    :param knobs: fixed values for some knobs, overriding the sampled ones
    :param seed: seed for knob sampling
    :returns: ``(predictions, model)``: the best trial's predictions on ``queries`` (or
        ``None``) and its model, reloaded from saved parameters
    """
    started = time.monotonic()
    if budget and int(budget.get("MODEL_TRIAL_COUNT", -1)) > 0:
        trials = int(budget["MODEL_TRIAL_COUNT"])
    if trials < 1:
        raise ValueError("trials should be at least 1")
    train_args = dict(train_args or {})
    rng = random.Random(seed)

    _header(f"Checking dependencies of `{model_class}` ({task})")
    for warning in _check_dependencies(dependencies):
        print(f"  WARNING: {warning}")

    _header("Loading the template")
    cls = load_model_class(model_file_path, model_class)
    config = validate_knob_config(cls.get_knob_config())
    config_json = knob_config_to_json(config)
    json.dumps(config_json, allow_nan=False)
    print(f"  knob config: {json.dumps(config_json)}")

    sink = _EchoSink()
    previous_sink = logger.set_sink(sink)
    results = []
    best = None
    try:
        with tempfile.TemporaryDirectory(prefix="duma-test-model-") as workdir:
            for trial_no in range(1, trials + 1):
                _header(f"Trial {trial_no}/{trials}")
                proposed = {**sample_knobs(config, rng), **(knobs or {})}
                # The knobs cross JSON on their way from the advisor, as on the platform.
                trial_knobs = coerce_knobs(config, json.loads(json.dumps(proposed, allow_nan=False)))
                print(f"  knobs: {trial_knobs}")
                logs_before = len(sink.records)

                model = cls(**trial_knobs)
                t0 = time.monotonic()
                call_train(model, train_dataset_path, None, train_args)
                train_secs = time.monotonic() - t0
                score = check_score(model.evaluate(val_dataset_path))
                print(f"  score on validation dataset: {score}")

                params = model.dump_parameters()
                if not isinstance(params, dict):
                    raise params_format.ParamsError(
                        f"dump_parameters() should return a dict, not `{type(params).__name__}`"
                    )
                params_path = os.path.join(workdir, f"trial-{trial_no}.params")
                size = params_format.save(params, params_path)
                print(f"  parameters: {len(params)} entries, {size} bytes in the safe format")

                predictions = None
                if queries is not None:
                    predictions = check_predictions(model.predict(queries), len(queries))
                model.destroy()

                reloaded = cls(**trial_knobs)
                reloaded.load_parameters(params_format.load(params_path))
                if queries is not None:
                    again = check_predictions(reloaded.predict(queries), len(queries))
                    if again != predictions:
                        print("  WARNING: predictions after load_parameters differ from those before dump_parameters")
                    predictions = again
                    print(f"  predictions: {_short(predictions)}")

                result = {
                    "trial": trial_no,
                    "knobs": trial_knobs,
                    "score": score,
                    "train_seconds": train_secs,
                    "params_bytes": size,
                    "logs": len(sink.records) - logs_before,
                    "predictions": predictions,
                }
                results.append(result)
                if best is None or score > best[0]["score"]:
                    if best is not None:
                        best[1].destroy()
                    best = (result, reloaded)
                else:
                    reloaded.destroy()

            best_result, best_model = best
            if test_dataset_path is not None:
                best_result["test_score"] = check_score(best_model.evaluate(test_dataset_path))
    finally:
        logger.set_sink(previous_sink)
        cls.teardown()

    _header("Report")
    for r in results:
        mark = "*" if r is best_result else " "
        print(
            f" {mark} trial {r['trial']}: score {r['score']:.6g}, trained in {r['train_seconds']:.2f}s, "
            f"params {r['params_bytes']} bytes, {r['logs']} log records, knobs {r['knobs']}"
        )
    if "test_score" in best_result:
        print(f"   best trial's score on the test dataset: {best_result['test_score']:.6g}")
    print(f"No errors encountered while testing `{model_class}` ({time.monotonic() - started:.1f}s).")
    return best_result["predictions"], best_model


test_model_class.__test__ = False


def _short(value, limit: int = 200) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
