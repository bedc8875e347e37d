import datetime as dt
import logging

import numpy as np
import pytest

from duma.model import logger as shared_logger
from duma.model import utils
from duma.model.log import ListSink, LoggerUtils, LogRecord


@pytest.fixture
def log():
    sink = ListSink()
    logger = LoggerUtils(sink)
    return logger, sink


def test_records_have_the_rust_kinds_and_payloads(log):
    logger, sink = log
    logger.define_plot("Precision & Recall", ["precision", "recall"], x_axis="epoch")
    logger.define_plot("Accuracy", ["accuracy"])
    logger.log("starting")
    logger.log(precision=0.1, recall=np.float32(0.5), epoch=np.int64(1))
    logger.log("both", loss=2)
    assert [(r.kind, r.payload) for r in sink.records] == [
        ("PLOT", {"title": "Precision & Recall", "metrics": ["precision", "recall"], "x_axis": "epoch"}),
        ("PLOT", {"title": "Accuracy", "metrics": ["accuracy"], "x_axis": None}),
        ("MESSAGE", {"message": "starting"}),
        ("METRICS", {"precision": 0.1, "recall": 0.5, "epoch": 1}),
        ("MESSAGE", {"message": "both"}),
        ("METRICS", {"loss": 2}),
    ]
    assert type(sink.records[3].payload["epoch"]) is int


def test_loss_helpers(log):
    logger, sink = log
    logger.define_loss_plot()
    logger.log_loss(0.25, 3)
    assert sink.records[0].payload == {"title": "Loss Over Epochs", "metrics": ["loss"], "x_axis": "epoch"}
    assert sink.records[1].payload == {"loss": 0.25, "epoch": 3}


def test_a_report_is_a_step_and_an_intermediate_score(log):
    logger, sink = log
    logger.report(np.float64(0.75), step=3)
    assert sink.records[0].kind == "METRICS"
    assert sink.records[0].payload == {"step": 3, "intermediate_score": 0.75}
    with pytest.raises(ValueError, match="finite"):
        logger.report(float("nan"), step=4)
    with pytest.raises(TypeError, match="step"):
        logger.report(0.5, step="four")


def test_non_finite_metrics_become_null_and_non_numbers_are_refused(log):
    logger, sink = log
    logger.log(bad=float("nan"), worse=np.inf)
    assert sink.records[0].payload == {"bad": None, "worse": None}
    with pytest.raises(TypeError, match="metric `name`"):
        logger.log(name="x")
    logger.log()  # nothing to log
    logger.log("")
    assert len(sink.records) == 1


def test_record_json_has_an_rfc3339_utc_time(log):
    logger, sink = log
    logger.log("hi")
    data = sink.records[0].to_json()
    assert data["kind"] == "MESSAGE" and data["payload"] == {"message": "hi"}
    parsed = dt.datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((parsed - dt.datetime.utcnow()).total_seconds()) < 60


def test_the_shared_logger_sink_is_pluggable_and_defaults_to_logging(caplog):
    assert utils.logger is shared_logger
    sink = ListSink()
    previous = shared_logger.set_sink(sink)
    try:
        utils.logger.log("to the sink")
    finally:
        shared_logger.set_sink(previous)
    assert [r.payload for r in sink.records] == [{"message": "to the sink"}]
    with caplog.at_level(logging.INFO, logger="duma.model"):
        shared_logger.log("to logging", accuracy=0.5)
        shared_logger.define_plot("Acc", ["accuracy"])
    assert "to logging" in caplog.text and "accuracy=0.5" in caplog.text and "plot `Acc`" in caplog.text


def test_set_sink_none_restores_logging():
    logger = LoggerUtils(ListSink())
    logger.set_sink(None)
    records = []
    logger.set_sink(records.append)
    logger.log("x")
    assert isinstance(records[0], LogRecord)
