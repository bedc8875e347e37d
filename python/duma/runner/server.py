"""The runner's command loop: one template class, at most one model instance at a time."""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from typing import Any, BinaryIO, Callable, Dict, Optional

from .. import __version__, params as params_format
from ..model import knob as knobs_mod
from ..model.contract import call_train, check_predictions, check_score
from ..model.log import LogRecord, LogType
from .capture import captured
from ..model.utils import load_model_class, logger as template_logger
from .protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameError,
    encode_checked_json,
    encode_json,
    read_frame,
    write_encoded,
    write_frame,
)

DEFAULT_MAX_INLINE_BYTES = 4 * 1024 * 1024


_JSON_NAMES = {dict: "JSON object", list: "JSON array", str: "string"}


def _json_name(value) -> str:
    for kind, name in _JSON_NAMES.items():
        if isinstance(value, kind):
            return name
    return {bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


class Encoded(bytes):
    """JSON already encoded (UTF-8), put into a reply frame as it is (predictions are encoded
    once, to know whether they fit a frame, and not again)."""


class ProtocolError(Exception):
    """A request that does not follow the protocol (unknown command, missing or mistyped field)."""


class StateError(Exception):
    """A request that is valid but not now (e.g. ``evaluate`` before ``train``)."""


class _Shutdown(Exception):
    pass


def error_body(exc: BaseException) -> Dict[str, str]:
    if isinstance(exc, SystemExit):
        message = f"the template called sys.exit({exc.code!r}); the runner ignores it and keeps serving"
    else:
        message = str(exc) or type(exc).__name__
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


class Runner:
    def __init__(
        self,
        inp: BinaryIO,
        out: BinaryIO,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
        output_dir: Optional[str] = None,
    ):
        self.inp, self.out = inp, out
        self.output_dir = output_dir
        self.max_frame_bytes = max_frame_bytes
        self.max_inline_bytes = max_inline_bytes
        self._write_lock = threading.Lock()
        self._current_id: Any = None
        self.model_class = None
        self.knob_config: Optional[Dict[str, knobs_mod.BaseKnob]] = None
        self.model = None
        self._commands: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
            "ping": self.cmd_ping,
            "load": self.cmd_load,
            "train": self.cmd_train,
            "evaluate": self.cmd_evaluate,
            "dump_parameters": self.cmd_dump_parameters,
            "load_parameters": self.cmd_load_parameters,
            "predict": self.cmd_predict,
            "destroy": self.cmd_destroy,
            "shutdown": self.cmd_shutdown,
        }

    # -- channel --------------------------------------------------------------------------------

    def send(self, message: Dict[str, Any]) -> None:
        with self._write_lock:
            write_frame(self.out, message, self.max_frame_bytes)

    def log_sink(self, record: LogRecord) -> None:
        # Templates may log from their own threads; frames stay whole thanks to the lock.
        self.send({"type": "log", "id": self._current_id, **record.to_json()})

    def serve(self) -> int:
        """Answers requests until ``shutdown`` or the end of stdin. Returns the exit code."""
        template_logger.set_sink(self.log_sink)
        self.send(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "duma": __version__,
                "workdir": os.getcwd(),
            }
        )
        while True:
            try:
                request = read_frame(self.inp, self.max_frame_bytes)
            except FrameError as e:
                self._reply_error(None, ProtocolError(f"{e}; the runner stops because the stream is out of sync"))
                try:
                    self._cleanup()
                except Exception:
                    traceback.print_exc()
                return 2
            except ValueError as e:
                self._reply_error(None, ProtocolError(str(e)))
                continue
            if request is None:  # the worker closed stdin: same as shutdown, nobody to answer
                try:
                    self._cleanup()
                except Exception:
                    traceback.print_exc()
                    return 1
                return 0
            try:
                self.handle(request)
            except _Shutdown as stop:
                return stop.args[0]

    def handle(self, request: Any) -> None:
        request_id = request.get("id") if isinstance(request, dict) else None
        self._current_id = request_id
        try:
            if not isinstance(request, dict):
                raise ProtocolError("a request must be a JSON object")
            cmd = request.get("cmd")
            command = self._commands.get(cmd) if isinstance(cmd, str) else None
            if command is None:
                raise ProtocolError(f"unknown command {cmd!r}; expected one of {', '.join(self._commands)}")
            result = command(request)
        except _Shutdown:
            raise
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit from a template is an error, not a way out
            self._reply_error(request_id, e)
        else:
            self._reply(request_id, result)
        finally:
            self._current_id = None

    def _reply(self, request_id, result: Dict[str, Any]) -> None:
        try:
            predictions = result.get("predictions")
            if isinstance(predictions, Encoded):
                head = encode_json({"type": "reply", "id": request_id})
                body = head[:-1] + b',"result":{"predictions":' + predictions + b"}}"
                with self._write_lock:
                    write_encoded(self.out, body, self.max_frame_bytes)
                return
            self.send({"type": "reply", "id": request_id, "result": result})
        except (ValueError, TypeError, FrameError) as e:
            self._reply_error(request_id, ProtocolError(f"the reply cannot be sent: {e}"))

    def _reply_error(self, request_id, exc: BaseException) -> None:
        self.send({"type": "error", "id": request_id, "error": error_body(exc)})

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _field(request, name, kind, required=True, default=None):
        if name not in request or request[name] is None:
            if required:
                raise ProtocolError(f"`{request.get('cmd')}` needs field `{name}`")
            return default
        value = request[name]
        if not isinstance(value, kind):
            raise ProtocolError(f"field `{name}` should be a {_JSON_NAMES[kind]}, not {_json_name(value)}")
        return value

    def _require_class(self):
        if self.model_class is None:
            raise StateError("no template is loaded: send `load` first")
        return self.model_class

    def _require_model(self):
        if self.model is None:
            raise StateError("no model instance: send `train` or `load_parameters` (with knobs) first")
        return self.model

    def _new_model(self, knobs: Dict[str, Any]):
        cls = self._require_class()
        knobs = knobs_mod.coerce_knobs(self.knob_config, knobs)
        self._destroy_model()
        self.model = cls(**knobs)
        return self.model

    def _destroy_model(self):
        model, self.model = self.model, None
        if model is not None:
            model.destroy()

    def _cleanup(self):
        try:
            self._destroy_model()
        finally:
            if self.model_class is not None:
                self.model_class.teardown()

    # -- commands -------------------------------------------------------------------------------

    def cmd_ping(self, request):
        return {}

    def cmd_load(self, request):
        if self.model_class is not None:
            raise StateError(f"template class `{self.model_class.__name__}` is already loaded; start another runner")
        path = self._field(request, "model_file", str)
        class_name = self._field(request, "model_class", str)
        cls = load_model_class(path, class_name)
        config = knobs_mod.validate_knob_config(cls.get_knob_config())
        config_json = knobs_mod.knob_config_to_json(config)
        self.model_class, self.knob_config = cls, config
        return {"knob_config": config_json}

    def cmd_train(self, request):
        knobs = self._field(request, "knobs", dict)
        dataset_path = self._field(request, "dataset_path", str)
        train_args = self._field(request, "train_args", dict, required=False, default={})
        shared_params_path = self._field(request, "shared_params_path", str, required=False)
        if "shared_params" in train_args:
            raise ProtocolError("train_args must not contain `shared_params`; use `shared_params_path`")
        shared_params = params_format.load(shared_params_path) if shared_params_path else None
        with captured(self._message):
            model = self._new_model(knobs)
            call_train(model, dataset_path, shared_params, train_args)
        return {}

    def cmd_evaluate(self, request):
        dataset_path = self._field(request, "dataset_path", str)
        with captured(self._message):
            score = self._require_model().evaluate(dataset_path)
        return {"score": check_score(score)}

    def _message(self, line: str) -> None:
        """A line the template printed or logged, as a MESSAGE record of its trial log."""
        self.log_sink(LogRecord(LogType.MESSAGE, {"message": line}))

    def cmd_dump_parameters(self, request):
        path = self._field(request, "path", str)
        params = self._require_model().dump_parameters()
        if not isinstance(params, dict):
            raise params_format.ParamsError(
                f"dump_parameters() should return a dict, not `{type(params).__name__}`"
            )
        size = params_format.save(params, path)
        return {"path": os.path.abspath(path), "size_bytes": size}

    def cmd_load_parameters(self, request):
        path = self._field(request, "path", str)
        knobs = self._field(request, "knobs", dict, required=False)
        params = params_format.load(path)
        if knobs is not None:
            self._require_class()
            knobs = knobs_mod.complete_knobs(self.knob_config, knobs)
        model = self._new_model(knobs) if knobs is not None else self._require_model()
        model.load_parameters(params)
        return {}

    def cmd_predict(self, request):
        queries = self._field(request, "queries", list, required=False)
        queries_path = self._field(request, "queries_path", str, required=False)
        predictions_path = self._field(request, "predictions_path", str, required=False)
        if (queries is None) == (queries_path is None):
            raise ProtocolError("`predict` needs exactly one of `queries` and `queries_path`")
        if queries_path is not None:
            with open(queries_path, encoding="utf-8") as f:
                queries = json.load(f)
            if not isinstance(queries, list):
                raise ProtocolError(f"`{queries_path}` should hold a JSON array of queries")
        model = self._require_model()
        predictions = check_predictions(model.predict(queries), len(queries))
        body = encode_checked_json(predictions)
        if predictions_path is None:
            if len(body) <= self.max_inline_bytes:
                # Sent as encoded here, not encoded again with the reply.
                return {"predictions": Encoded(body)}
            predictions_path = os.path.join(
                self.output_dir or ".", f"predictions-{os.getpid()}-{self._current_id}.json"
            )
        tmp = predictions_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, predictions_path)
        return {"predictions_path": os.path.abspath(predictions_path), "count": len(predictions)}

    def cmd_destroy(self, request):
        self._destroy_model()
        return {}

    def cmd_shutdown(self, request):
        request_id = self._current_id
        try:
            self._cleanup()
        except BaseException as e:
            self._reply_error(request_id, e)
            raise _Shutdown(1)
        self._reply(request_id, {})
        raise _Shutdown(0)
