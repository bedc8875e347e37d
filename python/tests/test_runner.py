"""The runner end to end, as a subprocess driven with the framed protocol."""

import json
import os
import struct

import numpy as np
import pytest

from duma import params
from helpers import RunnerProcess, template, write_blobs_csv

CENTROID_KNOBS = {"temperature": 0.5, "epochs": 2, "metric": "euclidean", "max_rows": 10000, "quick_eval": False}
QUERIES = [{"x1": 0.0, "x2": 0.2}, {"x1": 3.0, "x2": 3.1}]


@pytest.fixture
def runner(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = RunnerProcess(workdir)
    yield proc
    proc.close()


@pytest.fixture
def data(tmp_path):
    return write_blobs_csv(tmp_path / "train.csv", seed=1), write_blobs_csv(tmp_path / "val.csv", seed=2)


def test_ready_frame_announces_the_protocol(runner):
    assert runner.ready["type"] == "ready"
    assert runner.ready["protocol"] == 1 and runner.ready["pid"] == runner.proc.pid
    assert runner.ready["workdir"].endswith("work")


def test_full_trial_and_serving_cycle(runner, data, tmp_path):
    train, val = data
    result, _ = runner.call("load", model_file=template("rafiki_centroid.py"), model_class="RafikiCentroid")
    assert result["knob_config"] == {
        "epochs": {"type": "IntegerKnob", "min": 1, "max": 3, "is_exp": False},
        "max_rows": {"type": "FixedKnob", "value": 10000},
        "metric": {"type": "CategoricalKnob", "values": ["euclidean", "manhattan"]},
        "quick_eval": {"type": "PolicyKnob", "policy": "QUICK_EVAL"},
        "temperature": {"type": "FloatKnob", "min": 0.01, "max": 10.0, "is_exp": True},
    }

    result, logs = runner.call("train", knobs=CENTROID_KNOBS, dataset_path=train, train_args={"features": ["x1", "x2"], "target": "y"})
    assert result == {}
    assert [(l["kind"], l["payload"]) for l in logs] == [
        # What the template prints is in its trial log too (and never in the protocol stream).
        ("MESSAGE", {"message": "this print must not corrupt the protocol"}),
        ("PLOT", {"title": "Loss Over Epochs", "metrics": ["loss"], "x_axis": "epoch"}),
        ("MESSAGE", {"message": "training on train.csv"}),
        ("METRICS", {"loss": 1.0, "epoch": 0}),
        ("METRICS", {"loss": 0.5, "epoch": 1}),
    ]
    assert all(l["id"] == 2 and l["time"].endswith("Z") for l in logs)

    result, logs = runner.call("evaluate", dataset_path=val)
    assert isinstance(result["score"], float) and result["score"] > 0.9
    assert logs[0]["kind"] == "METRICS" and logs[0]["payload"]["accuracy"] == result["score"]

    result, _ = runner.call("dump_parameters", path="trial.params")  # relative to the workdir
    saved = tmp_path / "work" / "trial.params"
    assert result == {"path": str(saved), "size_bytes": saved.stat().st_size}
    dumped = params.load(saved)
    assert dumped["features"] == ["x1", "x2"] and dumped["centroids"].shape == (2, 2)

    before, _ = runner.call("predict", queries=QUERIES)
    runner.call("destroy")
    frame, _ = runner.request("predict", queries=QUERIES)
    assert frame["type"] == "error" and frame["error"]["type"] == "StateError"

    runner.call("load_parameters", path=str(saved), knobs=CENTROID_KNOBS)
    after, _ = runner.call("predict", queries=QUERIES)
    assert after == before
    probs = after["predictions"]
    assert len(probs) == 2 and probs[0][0] > 0.5 and probs[1][1] > 0.5
    assert sum(probs[0]) == pytest.approx(1.0)

    result, _ = runner.call("shutdown")
    assert result == {}
    assert runner.wait() == 0
    # The template's print went to its trial log (above) and its raw fd-1 write to stderr: neither
    # into the frames.
    assert "neither must this raw write to fd 1" in runner.stderr()


def test_singa_auto_template_and_shared_params(runner, data, tmp_path):
    train, val = data
    result, _ = runner.call("load", model_file=template("singa_mean.py"), model_class="SingaMean")
    assert result["knob_config"] == {"shift": {"type": "FixedKnob", "value": 0.0}}
    _, logs = runner.call("train", knobs={"shift": 0.0}, dataset_path=train)
    assert logs[0]["payload"] == {"mean": 0.5}
    score, _ = runner.call("evaluate", dataset_path=val)
    assert score == {"score": -0.25}  # np.float64 is accepted and sent as a float
    predictions, _ = runner.call("predict", queries=[{}, {}, {}])
    assert predictions == {"predictions": [0.5, 0.5, 0.5]}


def test_shared_params_and_train_args_reach_the_template(runner, data, tmp_path):
    shared = tmp_path / "shared.params"
    params.save({"w": np.array([0.75])}, shared)
    runner.call("load", model_file=template("broken_models.py"), model_class="RecordsShared")
    _, logs = runner.call("train", knobs={"k": 1}, dataset_path=data[0], train_args={"extra": 2}, shared_params_path=str(shared))
    assert logs[0]["payload"] == {"shared": 0.75, "extra": 2}


def test_a_train_error_returns_type_message_and_traceback(runner, data):
    runner.call("load", model_file=template("broken_models.py"), model_class="TrainRaises")
    frame, _ = runner.request("train", knobs={"k": 1}, dataset_path=data[0])
    assert frame["type"] == "error" and frame["id"] == 2
    error = frame["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "the dataset has no rows"
    assert "Traceback" in error["traceback"] and "broken_models.py" in error["traceback"]
    # The runner keeps serving after a template error.
    runner.call("ping")


def test_a_class_without_methods_fails_at_load(runner):
    frame, _ = runner.request("load", model_file=template("broken_models.py"), model_class="Empty")
    assert frame["type"] == "error"
    assert frame["error"]["type"] == "InvalidModelClassError"
    assert "`Empty` does not implement get_knob_config, train, evaluate, predict, dump_parameters, load_parameters" in frame["error"]["message"]
    frame, _ = runner.request("train", knobs={}, dataset_path="x")
    assert frame["error"]["type"] == "StateError" and "send `load` first" in frame["error"]["message"]


@pytest.mark.parametrize(
    "model_class, error_type, reason",
    [
        ("NotAModel", "InvalidModelClassError", "should extend BaseModel"),
        ("Nope", "InvalidModelClassError", "no class `Nope`"),
        ("BadKnobConfig", "InvalidKnobError", "knob `k` is a `int`, not a knob"),
    ],
)
def test_load_errors(runner, model_class, error_type, reason):
    frame, _ = runner.request("load", model_file=template("broken_models.py"), model_class=model_class)
    assert frame["error"]["type"] == error_type and reason in frame["error"]["message"]


def test_syntax_errors_and_missing_files_fail_at_load(runner):
    frame, _ = runner.request("load", model_file=template("syntax_error.py"), model_class="Broken")
    assert frame["error"]["type"] == "InvalidModelClassError" and "syntax error" in frame["error"]["message"]
    frame, _ = runner.request("load", model_file="/nonexistent/model.py", model_class="M")
    assert "cannot read the template file" in frame["error"]["message"]


@pytest.mark.parametrize(
    "model_class, cmd, fields, reason",
    [
        ("NanScore", "evaluate", {"dataset_path": "v"}, "finite"),
        ("StringScore", "evaluate", {"dataset_path": "v"}, "float score, not `str`"),
        ("ObjectPredictions", "predict", {"queries": [1]}, "prediction 0 is a `object`"),
        ("WrongCount", "predict", {"queries": [1, 2]}, "1 predictions for 2 queries"),
        ("ObjectParams", "dump_parameters", {"path": "p"}, "dtype `object`"),
        ("Exits", "train", {"knobs": {"k": 1}, "dataset_path": "t"}, "the template called sys.exit(3)"),
    ],
)
def test_bad_results_are_refused_clearly(runner, model_class, cmd, fields, reason):
    runner.call("load", model_file=template("broken_models.py"), model_class=model_class)
    if cmd != "train":
        runner.call("train", knobs={"k": 1}, dataset_path="t")
    frame, _ = runner.request(cmd, **fields)
    assert frame["type"] == "error", frame
    assert reason in frame["error"]["message"]
    runner.call("ping")


def test_knobs_are_checked_against_the_config(runner):
    runner.call("load", model_file=template("broken_models.py"), model_class="TrainRaises")
    frame, _ = runner.request("train", knobs={"k": 2}, dataset_path="t")
    assert frame["error"]["type"] == "InvalidKnobError" and "outside its space" in frame["error"]["message"]
    frame, _ = runner.request("train", knobs={}, dataset_path="t")
    assert "have no value" in frame["error"]["message"]


def test_a_template_reading_stdin_cannot_eat_frames(runner):
    runner.call("load", model_file=template("broken_models.py"), model_class="ReadsStdin")
    runner.call("train", knobs={"k": 1}, dataset_path="t")
    runner.call("ping")


def test_protocol_errors(runner):
    frame, _ = runner.request("fly")
    assert frame["error"]["type"] == "ProtocolError" and "unknown command 'fly'" in frame["error"]["message"]
    frame, _ = runner.request("load", model_class="X")
    assert "needs field `model_file`" in frame["error"]["message"]
    frame, _ = runner.request("load", model_file=3, model_class="X")
    assert "`model_file` should be a string, not number" in frame["error"]["message"]
    frame, _ = runner.request("evaluate", dataset_path="v")
    assert frame["error"]["type"] == "StateError"
    # A frame whose body is not JSON is answered and the stream stays usable.
    runner.send_raw(struct.pack(">I", 5) + b"{oops")
    frame = runner.read_frame()
    assert frame["type"] == "error" and frame["id"] is None and "not UTF-8 JSON" in frame["error"]["message"]
    runner.call("ping")
    # A frame over the size limit cannot be skipped: the runner says so and stops.
    runner.send_raw(struct.pack(">I", 2**31))
    frame = runner.read_frame()
    assert frame["type"] == "error" and "exceeds" in frame["error"]["message"]
    assert runner.wait() == 2


def test_large_predictions_and_queries_go_through_files(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner = RunnerProcess(workdir, extra_args=["--max-inline-bytes", "1000"])
    try:
        runner.call("load", model_file=template("broken_models.py"), model_class="BigPredictions")
        runner.call("train", knobs={"k": 1}, dataset_path="t")
        queries_path = tmp_path / "queries.json"
        queries_path.write_text(json.dumps([{"q": i} for i in range(3)]))
        result, _ = runner.call("predict", queries_path=str(queries_path))
        assert result["count"] == 3 and result["predictions_path"].startswith(str(workdir))
        with open(result["predictions_path"]) as f:
            assert json.load(f) == [list(range(1000))] * 3
        chosen = tmp_path / "out.json"
        result, _ = runner.call("predict", queries=[1], predictions_path=str(chosen))
        assert result == {"predictions_path": str(chosen), "count": 1}
        frame, _ = runner.request("predict", queries=[1], queries_path=str(queries_path))
        assert "exactly one of" in frame["error"]["message"]
    finally:
        runner.close()


def test_end_of_stdin_shuts_down_cleanly(runner):
    runner.call("load", model_file=template("singa_mean.py"), model_class="SingaMean")
    runner.proc.stdin.close()
    assert runner.wait() == 0


def test_protocol_doc_exists():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "PROTOCOL.md")) as f:
        text = f.read()
    for cmd in ["load", "train", "evaluate", "dump_parameters", "load_parameters", "predict", "destroy", "shutdown"]:
        assert f"`{cmd}`" in text


def test_rafiki_0_2_train_signature_without_shared_params(runner):
    runner.call("load", model_file=template("broken_models.py"), model_class="OldStyleTrain")
    _, logs = runner.call("train", knobs={"k": 1}, dataset_path="t")
    assert logs[0]["payload"] == {"message": "old style"}


def test_an_orphaned_runner_kills_its_group(tmp_path):
    """The worker dies without a word (SIGKILL): the runner and what its template started go too."""
    import signal
    import subprocess
    import sys
    import time

    from helpers import PYTHON_DIR

    worker = (
        "import subprocess, sys\n"
        "runner = subprocess.Popen([sys.executable, '-m', 'duma.runner'], stdin=subprocess.PIPE,\n"
        "                          stdout=subprocess.PIPE, process_group=0)\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], process_group=runner.pid)\n"
        "print(runner.pid, helper.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = PYTHON_DIR
    parent = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    runner_pid, helper_pid = (int(p) for p in parent.stdout.readline().split())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while alive(runner_pid) or alive(helper_pid):
        assert time.monotonic() < deadline, f"still running: runner {alive(runner_pid)}, helper {alive(helper_pid)}"
        time.sleep(0.05)


def test_prints_and_logging_become_trial_log_messages_in_order_and_capped(runner):
    from duma.runner.capture import MAX_LINE_CHARS, MAX_LINES

    runner.call("load", model_file=template("broken_models.py"), model_class="Chatty")
    _, logs = runner.call("train", knobs={"k": 1}, dataset_path="t")
    messages = [l["payload"]["message"] for l in logs if l["kind"] == "MESSAGE"]
    assert messages[:4] == ["epoch 1 loss 0.5", "INFO chatty: halfway", "no newline yet ... done", "WARNING root: careful"]
    assert len(messages) == MAX_LINES + 1, "capped, then one line says how many were dropped"
    assert messages[4].startswith("x" * MAX_LINE_CHARS + "… (1000 more characters)")
    assert messages[-1].startswith("… 1005 more lines of output were dropped")
    _, logs = runner.call("evaluate", dataset_path="t")
    assert [l["payload"] for l in logs] == [{"message": "evaluating"}]
    runner.call("ping")
