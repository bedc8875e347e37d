"""Trial logs written by a template while it trains and evaluates (Rafiki's ``utils.logger``).

Every call produces records shaped like the Rust side's trial logs:

* ``MESSAGE`` ``{"message": str}``
* ``METRICS`` ``{name: number, ...}`` (non-finite numbers become ``null``, as in Rust)
* ``PLOT`` ``{"title": str, "metrics": [str, ...], "x_axis": str | null}``

Records go to a pluggable *sink*: the runner installs one that streams them to the Rust worker;
by default they go to Python's ``logging`` (logger ``duma.model``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import numbers
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional


class LogType:
    MESSAGE = "MESSAGE"
    METRICS = "METRICS"
    PLOT = "PLOT"


@dataclass(frozen=True)
class LogRecord:
    kind: str
    payload: Dict[str, Any]
    time: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))

    def time_rfc3339(self) -> str:
        """UTC, microseconds, ``Z`` suffix: what ``chrono`` parses as ``DateTime<Utc>``."""
        return self.time.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "payload": self.payload, "time": self.time_rfc3339()}


Sink = Callable[[LogRecord], None]

_py_logger = logging.getLogger("duma.model")


def logging_sink(record: LogRecord) -> None:
    """The default sink: one readable line per record on Python's ``logging``."""
    p = record.payload
    if record.kind == LogType.MESSAGE:
        _py_logger.info("%s", p["message"])
    elif record.kind == LogType.METRICS:
        _py_logger.info("metrics: %s", ", ".join(f"{k}={v}" for k, v in p.items()))
    else:
        _py_logger.info("plot `%s`: %s against %s", p["title"], ", ".join(p["metrics"]), p["x_axis"] or "time")


class ListSink:
    """A sink that keeps records in memory (tests, ``test_model_class``)."""

    def __init__(self):
        self.records: List[LogRecord] = []
        self._lock = threading.Lock()

    def __call__(self, record: LogRecord) -> None:
        with self._lock:
            self.records.append(record)


class LoggerUtils:
    """Lets templates log messages, metrics and plot definitions.

    Use the shared instance rather than making one: ``from duma.model import logger`` (Rafiki:
    ``from rafiki.model import utils`` then ``utils.logger``)::

        logger.define_plot('Precision & Recall', ['precision', 'recall'], x_axis='epoch')
        logger.log('Starting training...')
        logger.log(precision=0.1, recall=0.6, epoch=1)
    """

    def __init__(self, sink: Optional[Sink] = None):
        self._sink: Sink = sink or logging_sink

    # -- platform side --------------------------------------------------------------------------

    def set_sink(self, sink: Optional[Sink]) -> Sink:
        """Routes records to ``sink`` (``None``: back to ``logging``); returns the previous sink."""
        previous, self._sink = self._sink, sink or logging_sink
        return previous

    @property
    def sink(self) -> Sink:
        return self._sink

    # -- template side --------------------------------------------------------------------------

    def define_plot(self, title: str, metrics: List[str], x_axis: Optional[str] = None):
        """Declares a plot of ``metrics`` against ``x_axis`` (a logged metric), or against time
        when ``x_axis`` is ``None``."""
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = [str(m) for m in metrics]
        self._emit(LogType.PLOT, {"title": str(title), "metrics": metrics, "x_axis": None if x_axis is None else str(x_axis)})

    def define_loss_plot(self):
        """A plot of ``loss`` against ``epoch``, for :meth:`log_loss`."""
        self.define_plot("Loss Over Epochs", ["loss"], x_axis="epoch")

    def log(self, msg: str = "", **metrics):
        """Logs a message and/or metric values (numbers) at one point in time."""
        if msg:
            self._emit(LogType.MESSAGE, {"message": str(msg)})
        if metrics:
            self._emit(LogType.METRICS, {name: _metric_value(name, v) for name, v in metrics.items()})

    def log_loss(self, loss, epoch):
        """Logs ``loss`` at ``epoch``, for :meth:`define_loss_plot`."""
        self.log(loss=loss, epoch=epoch)

    def report(self, score, step):
        """Reports an intermediate score (higher is better, like ``evaluate``'s) at ``step`` (an
        epoch, or any increasing number) while training. Unless the train job's budget sets
        ``EARLY_STOPPING`` to ``OFF``, the platform stops a trial whose reports fall behind the
        median of its completed trials' at the same step; it is then ``STOPPED`` with the last
        reported score. Reports are metrics ``step`` and ``intermediate_score`` in the logs."""
        score, step = _metric_value("score", score), _metric_value("step", step)
        if score is None or step is None:
            raise ValueError("report needs a finite score and step")
        self._emit(LogType.METRICS, {"step": step, "intermediate_score": score})

    def _emit(self, kind: str, payload: Dict[str, Any]):
        self._sink(LogRecord(kind, payload))


def _metric_value(name: str, value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    # numpy 0-d arrays and similar number-likes
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return _metric_value(name, value.item())
    raise TypeError(f"metric `{name}` should be an `int` or `float`, not `{type(value).__name__}`")
