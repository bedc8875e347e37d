"""A Python client for Duma's admin, with the methods and signatures of Rafiki's ``Client``.

::

    from duma.client import Client
    client = Client()                       # admin at localhost:3000
    client.login('superadmin@rafiki', password)
    client.create_dataset('fashion-train', 'IMAGE_CLASSIFICATION', 'train.zip')
    ...
    client.predict('fashion', query=image)

Errors raise :class:`DumaClientError` carrying the server's error class (``error``, e.g.
``InvalidTrainJobError``), its ``message`` and the HTTP ``status``.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Dict, List, Optional

from .constants import BudgetOption, InferenceBudgetOption, ModelAccessRight

try:
    import requests
except ImportError:  # pragma: no cover - the error says what to do when a method is called
    requests = None


class DumaClientError(Exception):
    """A request the admin (or predictor) refused or could not serve."""

    def __init__(self, error: str, message: str, status: Optional[int] = None):
        super().__init__(f"{error}: {message}" if error else message)
        self.error = error
        self.message = message
        self.status = status


# Rafiki's name for the same thing.
RafikiConnectionError = DumaClientError


class Client:
    """A session with Duma's admin.

    :param admin_host: host of the admin (default ``$DUMA_ADMIN_HOST``, ``$RAFIKI_ADDR`` or
        ``localhost``)
    :param admin_port: port of the admin (default ``$DUMA_ADMIN_PORT``, ``$ADMIN_EXT_PORT`` or 3000)
    :param timeout: seconds to wait for each HTTP response (``None``: no limit)
    """

    def __init__(self, admin_host: str = None, admin_port: int = None, timeout: Optional[float] = 600):
        self._admin_host = admin_host or os.environ.get("DUMA_ADMIN_HOST") or os.environ.get("RAFIKI_ADDR") or "localhost"
        self._admin_port = int(admin_port or os.environ.get("DUMA_ADMIN_PORT") or os.environ.get("ADMIN_EXT_PORT") or 3000)
        self._timeout = timeout
        self._token: Optional[str] = None
        self._user: Optional[Dict[str, Any]] = None
        if requests is None:
            raise ImportError("duma.client needs `requests`: pip install requests")
        self._session = requests.Session()

    # -- session -------------------------------------------------------------------------------

    def login(self, email: str, password: str) -> Dict[str, Any]:
        """Logs in; returns ``{id, user_type}`` of the user."""
        data = self._post("/tokens", json={"email": email, "password": password})
        self._token = data["token"]
        self._user = {"id": data["user_id"], "user_type": data["user_type"]}
        return self._user

    def get_current_user(self) -> Optional[Dict[str, Any]]:
        """The logged-in user as ``{id, user_type}``, or ``None``."""
        return self._user

    def logout(self) -> None:
        self._token = None
        self._user = None

    # -- users ---------------------------------------------------------------------------------

    def create_user(self, email: str, password: str, user_type: str) -> Dict[str, Any]:
        return self._post("/users", json={"email": email, "password": password, "user_type": user_type})

    def get_users(self) -> List[Dict[str, Any]]:
        return self._get("/users")

    def ban_user(self, email: str) -> Dict[str, Any]:
        return self._delete("/users", json={"email": email})

    # -- datasets ------------------------------------------------------------------------------

    def create_dataset(self, name: str, task: str, dataset_path: str = None, dataset_url: str = None) -> Dict[str, Any]:
        """Uploads the file at ``dataset_path``, or has the admin download ``dataset_url``."""
        if (dataset_path is None) == (dataset_url is None):
            raise ValueError("give exactly one of `dataset_path` and `dataset_url`")
        form = {"name": name, "task": task}
        if dataset_url is not None:
            form["dataset_url"] = dataset_url
            return self._post("/datasets", data=form)
        with open(dataset_path, "rb") as f:
            files = {"dataset": (os.path.basename(dataset_path), f, "application/octet-stream")}
            return self._post("/datasets", data=form, files=files)

    def get_datasets(self, task: str = None) -> List[Dict[str, Any]]:
        return self._get("/datasets", params={"task": task})

    # -- models --------------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        task: str,
        model_file_path: str,
        model_class: str,
        dependencies: Dict[str, str] = None,
        access_right: str = ModelAccessRight.PRIVATE,
        docker_image: str = None,
        checkpoint_path: str = None,
    ) -> Dict[str, Any]:
        """Uploads a template file; ``dependencies`` is ``{package: version}``. With
        ``checkpoint_path`` (trained parameters: what ``duma.params.save`` writes or a trial's
        parameters download), the template serves without training."""
        form = {
            "name": name,
            "task": task,
            "model_class": model_class,
            "dependencies": json.dumps(dependencies or {}),
            "access_right": access_right,
        }
        if docker_image is not None:
            form["docker_image"] = docker_image
        with contextlib.ExitStack() as opened:
            f = opened.enter_context(open(model_file_path, "rb"))
            files = {"model_file_bytes": (os.path.basename(model_file_path), f, "application/octet-stream")}
            if checkpoint_path is not None:
                c = opened.enter_context(open(checkpoint_path, "rb"))
                files["checkpoint_id"] = (os.path.basename(checkpoint_path), c, "application/octet-stream")
            return self._post("/models", data=form, files=files)

    def get_available_models(self, task: str = None) -> List[Dict[str, Any]]:
        return self._get("/models/available", params={"task": task})

    def get_model(self, model_id: str) -> Dict[str, Any]:
        return self._get(f"/models/{model_id}")

    def delete_model(self, model_id: str) -> Dict[str, Any]:
        return self._delete(f"/models/{model_id}")

    def download_model_file(self, model_id: str, out_model_file_path: str) -> Dict[str, Any]:
        """Saves the model's template source to ``out_model_file_path``; returns the model."""
        content = self._get(f"/models/{model_id}/model_file")
        with open(out_model_file_path, "wb") as f:
            f.write(content)
        return self.get_model(model_id)

    # -- train jobs ----------------------------------------------------------------------------

    def create_train_job(
        self,
        app: str,
        task: str,
        train_dataset_id: str,
        val_dataset_id: str,
        budget: Dict[str, Any] = None,
        models: List[str] = None,
        train_args: Dict[str, Any] = None,
    ) -> Dict[str, Any]:
        """Starts tuning ``models`` (IDs; default: every model available for ``task``)."""
        if models is None:
            models = [m["id"] for m in self.get_available_models(task)]
        budget = {BudgetOption.TIME_HOURS: 0.1, BudgetOption.GPU_COUNT: 0, **(budget or {})}
        return self._post(
            "/train_jobs",
            json={
                "app": app,
                "task": task,
                "train_dataset_id": train_dataset_id,
                "val_dataset_id": val_dataset_id,
                "budget": budget,
                "model_ids": models,
                "train_args": train_args or {},
            },
        )

    def get_train_jobs_by_user(self, user_id: str) -> List[Dict[str, Any]]:
        return self._get("/train_jobs", params={"user_id": user_id})

    def get_train_jobs_of_app(self, app: str) -> List[Dict[str, Any]]:
        return self._get(f"/train_jobs/{app}")

    def get_train_job(self, app: str, app_version: int = -1) -> Dict[str, Any]:
        return self._get(f"/train_jobs/{app}/{app_version}")

    def stop_train_job(self, app: str, app_version: int = -1) -> Dict[str, Any]:
        return self._post(f"/train_jobs/{app}/{app_version}/stop")

    # -- trials --------------------------------------------------------------------------------

    def get_trials_of_train_job(self, app: str, app_version: int = -1, limit: int = 1000, offset: int = 0) -> List[Dict[str, Any]]:
        return self._get(f"/train_jobs/{app}/{app_version}/trials", params={"limit": limit, "offset": offset})

    def get_best_trials_of_train_job(self, app: str, app_version: int = -1, max_count: int = 2) -> List[Dict[str, Any]]:
        return self._get(f"/train_jobs/{app}/{app_version}/trials", params={"type": "best", "max_count": max_count})

    def get_trial(self, trial_id: str) -> Dict[str, Any]:
        return self._get(f"/trials/{trial_id}")

    def get_trial_logs(self, trial_id: str) -> Dict[str, Any]:
        return self._get(f"/trials/{trial_id}/logs")

    def get_trial_parameters(self, trial_id: str):
        """The trial's trained parameters: a dict for Python templates (read with
        ``duma.params``, never unpickled), raw bytes for built-in templates."""
        from . import params as params_format

        data = self._get(f"/trials/{trial_id}/parameters")
        return params_format.loads(data) if params_format.is_params(data) else data

    def load_trial_model(self, trial_id: str, ModelClass):
        """A trained instance of ``ModelClass`` with the trial's knobs and parameters."""
        knobs = self.get_trial(trial_id)["proposal"]["knobs"]
        params = self.get_trial_parameters(trial_id)
        model = ModelClass(**knobs)
        model.load_parameters(params)
        return model

    # -- inference jobs ------------------------------------------------------------------------

    def create_inference_job(self, app: str, app_version: int = -1, budget: Dict[str, Any] = None,
                             model_id: str = None, knobs: Dict[str, Any] = None) -> Dict[str, Any]:
        """Serves a trained version of ``app``; with ``model_id`` (Duma's), makes a new version
        of an uploaded model and serves it, nothing trained: an ONNX model, or a template
        uploaded with a checkpoint, built with ``knobs``."""
        budget = {InferenceBudgetOption.GPU_COUNT: 0, **(budget or {})}
        body = {"app": app, "budget": budget}
        if model_id is None:
            body["app_version"] = app_version
        else:
            body["model_id"] = model_id
        if knobs is not None:
            body["knobs"] = knobs
        return self._post("/inference_jobs", json=body)

    def create_inference_job_by_checkpoint(self, model_name: str, budget: Dict[str, Any] = None,
                                           knobs: Dict[str, Any] = None) -> Dict[str, Any]:
        """SINGA-Auto's: serves your model ``model_name`` (uploaded with a checkpoint) as a new
        version of the app of the same name."""
        budget = {InferenceBudgetOption.GPU_COUNT: 0, **(budget or {})}
        body = {"model_name": model_name, "budget": budget}
        if knobs is not None:
            body["knobs"] = knobs
        return self._post("/inference_jobs/checkpoint", json=body)

    def get_inference_jobs_by_user(self, user_id: str) -> List[Dict[str, Any]]:
        return self._get("/inference_jobs", params={"user_id": user_id})

    def get_inference_jobs_of_app(self, app: str) -> List[Dict[str, Any]]:
        return self._get(f"/inference_jobs/{app}")

    def get_running_inference_job(self, app: str, app_version: int = -1) -> Dict[str, Any]:
        return self._get(f"/inference_jobs/{app}/{app_version}")

    def stop_inference_job(self, app: str, app_version: int = -1) -> Dict[str, Any]:
        return self._post(f"/inference_jobs/{app}/{app_version}/stop")

    # -- predictions ---------------------------------------------------------------------------

    def predict(self, app: str, query: Any = None, queries: List[Any] = None, app_version: int = -1):
        """Sends ``query`` (returns its prediction) or ``queries`` (returns the list of
        predictions) to the predictor of the app's running inference job."""
        if (query is None) == (queries is None):
            raise ValueError("give exactly one of `query` and `queries`")
        host = self.get_running_inference_job(app, app_version)["predictor_host"]
        body = {"query": query} if queries is None else {"queries": list(queries)}
        res = self._session.post(f"http://{host}/predict", json=body, timeout=self._timeout)
        data = self._parse_response(res)
        return data["prediction"] if queries is None else data["predictions"]

    # -- deployments and evaluations (Duma's; docs/deployments.md) ------------------------------

    def create_deployment(self, name: str, app: str, app_version: int = -1, service_level: str = None,
                          replicas: int = None) -> Dict[str, Any]:
        body = {"name": name, "app": app, "app_version": app_version}
        if service_level is not None:
            body["service_level"] = service_level
        if replicas is not None:
            body["replicas"] = replicas
        return self._post("/deployments", json=body)

    def get_deployments(self) -> List[Dict[str, Any]]:
        return self._get("/deployments")

    def get_deployment(self, name: str) -> Dict[str, Any]:
        return self._get(f"/deployments/{name}")

    def update_deployment(self, name: str, **changes: Any) -> Dict[str, Any]:
        """``app_version=``, ``weights={"3": 95, "4": 5}``, ``shadow=`` and/or ``replicas=``."""
        return self._patch(f"/deployments/{name}", json=changes)

    def rollback_deployment(self, name: str) -> Dict[str, Any]:
        return self._post(f"/deployments/{name}/rollback")

    def delete_deployment(self, name: str) -> Dict[str, Any]:
        return self._delete(f"/deployments/{name}")

    def create_evaluation(self, dataset_id: str, deployment: str = None, app: str = None,
                          app_version: int = None, trial_id: str = None) -> Dict[str, Any]:
        """Scores a deployment's version, an app version or one trial on a labelled dataset."""
        body = {"dataset_id": dataset_id, "deployment": deployment, "app": app,
                "app_version": app_version, "trial_id": trial_id}
        return self._post("/evaluations", json={k: v for k, v in body.items() if v is not None})

    def get_evaluation(self, evaluation_id: str) -> Dict[str, Any]:
        return self._get(f"/evaluations/{evaluation_id}")

    def get_evaluations(self, app: str = None, dataset_id: str = None) -> List[Dict[str, Any]]:
        return self._get("/evaluations", params={"app": app, "dataset_id": dataset_id})

    def compare_evaluations(self, app: str) -> Dict[str, Any]:
        """The app's versions side by side: the latest completed evaluation of each."""
        return self._get(f"/apps/{app}/evaluations")

    # -- administration ------------------------------------------------------------------------

    def stop_all_jobs(self) -> Dict[str, Any]:
        return self._post("/actions/stop_all_jobs")

    # -- HTTP ----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"http://{self._admin_host}:{self._admin_port}{path}"

    def _headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _get(self, path, params=None):
        params = {k: v for k, v in (params or {}).items() if v is not None}
        res = self._session.get(self._url(path), headers=self._headers(), params=params, timeout=self._timeout)
        return self._parse_response(res)

    def _post(self, path, json=None, data=None, files=None):
        res = self._session.post(
            self._url(path), headers=self._headers(), json=json, data=data, files=files, timeout=self._timeout
        )
        return self._parse_response(res)

    def _patch(self, path, json=None):
        res = self._session.patch(self._url(path), headers=self._headers(), json=json, timeout=self._timeout)
        return self._parse_response(res)

    def _delete(self, path, json=None):
        res = self._session.delete(self._url(path), headers=self._headers(), json=json, timeout=self._timeout)
        return self._parse_response(res)

    @staticmethod
    def _parse_response(res):
        content_type = (res.headers.get("Content-Type") or "").split(";")[0].strip()
        if res.status_code != 200:
            error, message = "HTTPError", res.text or res.reason
            if content_type == "application/json":
                try:
                    body = res.json()
                    error = body.get("error") or error
                    message = body.get("message") or message
                except (ValueError, AttributeError):
                    pass
            raise DumaClientError(error, message, res.status_code)
        if content_type == "application/json":
            return res.json()
        if content_type == "application/octet-stream":
            return res.content
        raise DumaClientError("InvalidResponseError", f"unexpected response content type `{content_type}`", res.status_code)
