"""The client against a tiny local stand-in for the admin and predictor (http.server)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pytest.importorskip("requests")

from duma import params  # noqa: E402
from duma.client import Client, DumaClientError  # noqa: E402


class Stub:
    """Records requests; answers from `routes` {(method, path): (status, content_type, body)}."""

    def __init__(self):
        self.requests = []
        self.routes = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self, method):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                status, content_type, payload = stub.routes.get(
                    (method, url.path),
                    (404, "application/json", {"error": "NotFoundError", "message": f"no route {url.path}"}),
                )
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json(self, method, path, payload, status=200):
        self.routes[(method, path)] = (status, "application/json", payload)

    def last(self):
        return self.requests[-1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


@pytest.fixture
def client(stub):
    stub.json("POST", "/tokens", {"user_id": "u1", "user_type": "APP_DEVELOPER", "token": "tok"})
    c = Client(admin_host="127.0.0.1", admin_port=stub.port)
    assert c.login("a@b.c", "pw") == {"id": "u1", "user_type": "APP_DEVELOPER"}
    return c


def test_default_admin_address(monkeypatch):
    for var in ("DUMA_ADMIN_HOST", "RAFIKI_ADDR", "DUMA_ADMIN_PORT", "ADMIN_EXT_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert Client()._url("/users") == "http://localhost:3000/users"


def test_login_sends_credentials_and_then_a_bearer_token(stub, client):
    assert json.loads(stub.requests[0]["body"]) == {"email": "a@b.c", "password": "pw"}
    assert client.get_current_user() == {"id": "u1", "user_type": "APP_DEVELOPER"}
    stub.json("GET", "/users", [{"id": "u1"}])
    assert client.get_users() == [{"id": "u1"}]
    assert stub.last()["headers"]["Authorization"] == "Bearer tok"
    client.logout()
    assert client.get_current_user() is None


def test_users(stub, client):
    stub.json("POST", "/users", {"id": "u2", "email": "x@y", "user_type": "MODEL_DEVELOPER"})
    client.create_user("x@y", "pw", "MODEL_DEVELOPER")
    assert json.loads(stub.last()["body"]) == {"email": "x@y", "password": "pw", "user_type": "MODEL_DEVELOPER"}
    stub.json("DELETE", "/users", {"id": "u2"})
    client.ban_user("x@y")
    assert stub.last()["method"] == "DELETE" and json.loads(stub.last()["body"]) == {"email": "x@y"}


def test_errors_carry_the_server_error_class_and_message(stub, client):
    stub.json("POST", "/train_jobs/app/1/stop", {"error": "InvalidTrainJobError", "message": "no such job"}, status=404)
    with pytest.raises(DumaClientError) as info:
        client.stop_train_job("app", 1)
    assert info.value.error == "InvalidTrainJobError"
    assert info.value.message == "no such job"
    assert info.value.status == 404
    assert "InvalidTrainJobError: no such job" in str(info.value)


def test_datasets_upload_as_multipart_or_by_url(stub, client, tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"a,b\n1,2\n")
    stub.json("POST", "/datasets", {"id": "d1", "name": "train", "task": "T", "size_bytes": 8})
    assert client.create_dataset("train", "T", dataset_path=str(path))["id"] == "d1"
    req = stub.last()
    assert req["headers"]["Content-Type"].startswith("multipart/form-data")
    assert b'name="dataset"; filename="train.csv"' in req["body"] and b"a,b\n1,2\n" in req["body"]
    assert b'name="name"\r\n\r\ntrain' in req["body"] and b'name="task"\r\n\r\nT' in req["body"]
    client.create_dataset("remote", "T", dataset_url="http://example.test/d.zip")
    assert parse_qs(stub.last()["body"].decode())["dataset_url"] == ["http://example.test/d.zip"]
    with pytest.raises(ValueError):
        client.create_dataset("x", "T")
    stub.json("GET", "/datasets", [])
    client.get_datasets(task="T")
    assert stub.last()["query"] == {"task": "T"}
    client.get_datasets()
    assert stub.last()["query"] == {}


def test_models(stub, client, tmp_path):
    source = tmp_path / "model.py"
    source.write_bytes(b"class M: pass\n")
    stub.json("POST", "/models", {"id": "m1", "user_id": "u1", "name": "m"})
    client.create_model("m", "T", str(source), "M", dependencies={"numpy": "1.26.4"}, access_right="PUBLIC")
    body = stub.last()["body"]
    assert b'name="model_file_bytes"; filename="model.py"' in body and b"class M: pass" in body
    assert b'name="dependencies"\r\n\r\n{"numpy": "1.26.4"}' in body
    assert b'name="model_class"\r\n\r\nM' in body and b'name="access_right"\r\n\r\nPUBLIC' in body
    checkpoint = tmp_path / "trained.params"
    checkpoint.write_bytes(params.dumps({"w": np.arange(2)}))
    client.create_model("c", "T", str(source), "M", checkpoint_path=str(checkpoint))
    body = stub.last()["body"]
    assert b'name="checkpoint_id"; filename="trained.params"' in body and checkpoint.read_bytes() in body
    stub.json("POST", "/inference_jobs/checkpoint", {"id": "i1", "model_id": "m1"})
    client.create_inference_job_by_checkpoint("c", knobs={"k": 1})
    assert json.loads(stub.last()["body"]) == {"model_name": "c", "budget": {"GPU_COUNT": 0}, "knobs": {"k": 1}}
    stub.json("GET", "/models/available", [{"id": "m1"}])
    assert client.get_available_models("T") == [{"id": "m1"}] and stub.last()["query"] == {"task": "T"}
    stub.json("GET", "/models/m1", {"id": "m1", "model_class": "M"})
    assert client.get_model("m1")["model_class"] == "M"
    stub.routes[("GET", "/models/m1/model_file")] = (200, "application/octet-stream", b"class M: pass\n")
    out = tmp_path / "downloaded.py"
    assert client.download_model_file("m1", str(out))["id"] == "m1"
    assert out.read_bytes() == b"class M: pass\n"
    stub.json("DELETE", "/models/m1", {"id": "m1"})
    client.delete_model("m1")
    assert stub.last()["method"] == "DELETE"


def test_train_jobs_and_trials(stub, client):
    stub.json("GET", "/models/available", [{"id": "m1"}, {"id": "m2"}])
    stub.json("POST", "/train_jobs", {"id": "j1", "app": "app", "app_version": 1})
    client.create_train_job("app", "T", "d1", "d2", {"MODEL_TRIAL_COUNT": 3}, train_args={"target": "y"})
    assert json.loads(stub.last()["body"]) == {
        "app": "app", "task": "T", "train_dataset_id": "d1", "val_dataset_id": "d2",
        "budget": {"TIME_HOURS": 0.1, "GPU_COUNT": 0, "MODEL_TRIAL_COUNT": 3},
        "model_ids": ["m1", "m2"], "train_args": {"target": "y"},
    }
    for path in ["/train_jobs", "/train_jobs/app", "/train_jobs/app/-1", "/train_jobs/app/-1/trials",
                 "/trials/t1", "/trials/t1/logs"]:
        stub.json("GET", path, {"path": path})
    assert client.get_train_jobs_by_user("u1")["path"] == "/train_jobs" and stub.last()["query"] == {"user_id": "u1"}
    assert client.get_train_jobs_of_app("app")["path"] == "/train_jobs/app"
    assert client.get_train_job("app")["path"] == "/train_jobs/app/-1"
    client.get_trials_of_train_job("app")
    assert stub.last()["query"] == {"limit": "1000", "offset": "0"}
    client.get_best_trials_of_train_job("app", max_count=3)
    assert stub.last()["query"] == {"type": "best", "max_count": "3"}
    assert client.get_trial("t1")["path"] == "/trials/t1"
    assert client.get_trial_logs("t1")["path"] == "/trials/t1/logs"


def test_trial_parameters_are_read_safely(stub, client):
    stub.routes[("GET", "/trials/t1/parameters")] = (200, "application/octet-stream", params.dumps({"w": np.arange(3)}))
    loaded = client.get_trial_parameters("t1")
    np.testing.assert_array_equal(loaded["w"], np.arange(3))
    # Built-in (Rust) templates' parameters are returned as bytes, untouched.
    stub.routes[("GET", "/trials/t2/parameters")] = (200, "application/octet-stream", b"DUMAPRMS\x01\x00")
    assert client.get_trial_parameters("t2") == b"DUMAPRMS\x01\x00"


def test_inference_jobs_and_predict(stub, client):
    stub.json("POST", "/inference_jobs", {"id": "i1", "predictor_host": f"127.0.0.1:{stub.port}"})
    client.create_inference_job("app")
    assert json.loads(stub.last()["body"]) == {"app": "app", "app_version": -1, "budget": {"GPU_COUNT": 0}}
    stub.json("GET", "/inference_jobs/app/-1", {"id": "i1", "predictor_host": f"127.0.0.1:{stub.port}"})
    stub.json("POST", "/predict", {"prediction": [0.1, 0.9], "predictions": []})
    assert client.predict("app", query={"x": 1}) == [0.1, 0.9]
    assert json.loads(stub.last()["body"]) == {"query": {"x": 1}}
    stub.json("POST", "/predict", {"prediction": None, "predictions": [1, 2]})
    assert client.predict("app", queries=[{"x": 1}, {"x": 2}]) == [1, 2]
    assert json.loads(stub.last()["body"]) == {"queries": [{"x": 1}, {"x": 2}]}
    with pytest.raises(ValueError):
        client.predict("app")
    stub.json("GET", "/inference_jobs", [])
    client.get_inference_jobs_by_user("u1")
    assert stub.last()["query"] == {"user_id": "u1"}
    stub.json("GET", "/inference_jobs/app", [])
    client.get_inference_jobs_of_app("app")
    stub.json("POST", "/inference_jobs/app/2/stop", {"id": "i1"})
    client.stop_inference_job("app", 2)
    stub.json("POST", "/actions/stop_all_jobs", {"train_jobs": [], "inference_jobs": []})
    assert client.stop_all_jobs() == {"train_jobs": [], "inference_jobs": []}


def test_predict_without_running_job_raises_the_server_error(stub, client):
    stub.json("GET", "/inference_jobs/app/-1",
              {"error": "InvalidRunningInferenceJobError", "message": "none running"}, status=404)
    with pytest.raises(DumaClientError) as info:
        client.predict("app", query=1)
    assert info.value.error == "InvalidRunningInferenceJobError"


def test_unexpected_content_type_is_an_error(stub, client):
    stub.routes[("GET", "/users")] = (200, "text/html", b"<html>")
    with pytest.raises(DumaClientError, match="content type `text/html`"):
        client.get_users()
