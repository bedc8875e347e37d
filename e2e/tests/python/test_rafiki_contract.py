"""Drives a running admin the way Rafiki's Python client does: plain `requests`, multipart part
names `dataset` and `model_file_bytes`, query parameters, and the client's exact content-type
check. The admin URL and superadmin credentials come from the environment (see
admin/tests/api/python_client.rs, which starts the admin and runs this file)."""

import json
import os
import uuid

import pytest
import requests

ADMIN = os.environ["DUMA_ADMIN_URL"]
SUPERADMIN_EMAIL = os.environ.get("DUMA_SUPERADMIN_EMAIL", "superadmin@rafiki")
SUPERADMIN_PASSWORD = os.environ["DUMA_SUPERADMIN_PASSWORD"]
TASK = "TABULAR_CLASSIFICATION"


def parse(res):
    """What Rafiki's client does with every response."""
    if res.status_code != 200:
        raise Exception(res.text)
    content_type = res.headers.get("Content-Type")
    if content_type == "application/json":
        return res.json()
    if content_type == "application/octet-stream":
        return res.content
    raise Exception(f"Invalid response content type: {content_type}")


def login(email, password):
    data = parse(requests.post(f"{ADMIN}/tokens", json={"email": email, "password": password}))
    return {"Authorization": f"Bearer {data['token']}"}, data


@pytest.fixture(scope="module")
def superadmin():
    headers, _ = login(SUPERADMIN_EMAIL, SUPERADMIN_PASSWORD)
    return headers


def new_user(superadmin, user_type):
    email = f"{user_type.lower()}-{uuid.uuid4().hex}@duma.test"
    user = parse(requests.post(f"{ADMIN}/users", headers=superadmin,
                               json={"email": email, "password": "secret", "user_type": user_type}))
    assert user["email"] == email and user["user_type"] == user_type
    headers, token = login(email, "secret")
    assert token["user_type"] == user_type and token["user_id"] == user["id"]
    return headers, user


def upload_dataset(headers, name, csv_text):
    res = requests.post(f"{ADMIN}/datasets", headers=headers,
                        files={"dataset": ("data.csv", csv_text.encode())},
                        data={"name": name, "task": TASK})
    return parse(res)


def test_users_can_be_created_listed_and_banned(superadmin):
    headers, user = new_user(superadmin, "APP_DEVELOPER")
    users = parse(requests.get(f"{ADMIN}/users", headers=superadmin))
    assert any(u["id"] == user["id"] and u["banned_date"] is None for u in users)
    banned = parse(requests.delete(f"{ADMIN}/users", headers=superadmin, json={"email": user["email"]}))
    assert banned["banned_date"].endswith("GMT")
    res = requests.get(f"{ADMIN}/datasets", headers=headers)
    assert res.status_code == 401
    assert res.json()["error"] == "UnauthorizedError"


def test_datasets_upload_and_list_with_task_query(superadmin):
    headers, _ = new_user(superadmin, "APP_DEVELOPER")
    created = upload_dataset(headers, "train", "a,b,y\n1,2,0\n3,4,1\n")
    assert set(created) >= {"id", "name", "task", "size_bytes"}
    assert created["size_bytes"] == len("a,b,y\n1,2,0\n3,4,1\n")
    listed = parse(requests.get(f"{ADMIN}/datasets", headers=headers, params={"task": TASK}))
    assert [d["id"] for d in listed] == [created["id"]]
    assert parse(requests.get(f"{ADMIN}/datasets", headers=headers, params={"task": "OTHER"})) == []


def test_models_upload_with_model_file_bytes(superadmin):
    headers, user = new_user(superadmin, "MODEL_DEVELOPER")
    source = b"from rafiki.model import BaseModel\nclass MyModel(BaseModel):\n    pass\n"
    created = parse(requests.post(
        f"{ADMIN}/models", headers=headers,
        files={"model_file_bytes": ("model.py", source)},
        data={"name": "my-model", "task": TASK, "model_class": "MyModel",
              "dependencies": json.dumps({"numpy": "1.26.4"}), "access_right": "PUBLIC"}))
    assert created["name"] == "my-model" and created["user_id"] == user["id"]
    model = parse(requests.get(f"{ADMIN}/models/{created['id']}", headers=headers))
    assert model["dependencies"] == {"numpy": "1.26.4"} and model["access_right"] == "PUBLIC"
    assert parse(requests.get(f"{ADMIN}/models/{created['id']}/model_file", headers=headers)) == source
    available = parse(requests.get(f"{ADMIN}/models/available", headers=headers, params={"task": TASK}))
    assert created["id"] in [m["id"] for m in available]
    dup = requests.post(f"{ADMIN}/models", headers=headers,
                        files={"model_file_bytes": ("model.py", source)},
                        data={"name": "my-model", "task": TASK, "model_class": "MyModel", "dependencies": "{}"})
    assert dup.status_code == 409 and dup.json()["error"] == "DuplicateModelNameError"


def test_train_job_creation_listing_and_stop(superadmin):
    headers, user = new_user(superadmin, "APP_DEVELOPER")
    train = upload_dataset(headers, "train", "a,b,y\n1,2,0\n3,4,1\n")
    val = upload_dataset(headers, "val", "a,b,y\n1,2,0\n3,4,1\n")
    models = parse(requests.get(f"{ADMIN}/models/available", headers=headers, params={"task": TASK}))
    builtin = [m["id"] for m in models if m["access_right"] == "PUBLIC"][:1]
    assert builtin, "built-in models are available on a fresh install"
    job = parse(requests.post(f"{ADMIN}/train_jobs", headers=headers, json={
        "app": "fashion", "task": TASK, "train_dataset_id": train["id"], "val_dataset_id": val["id"],
        "budget": {"MODEL_TRIAL_COUNT": 3}, "model_ids": builtin, "train_args": {"target": "y"}}))
    assert job["app"] == "fashion" and job["app_version"] == 1
    again = requests.post(f"{ADMIN}/train_jobs", headers=headers, json={
        "app": "fashion", "task": TASK, "train_dataset_id": train["id"], "val_dataset_id": val["id"]})
    assert again.status_code == 409 and again.json()["error"] == "InvalidTrainJobError"
    jobs = parse(requests.get(f"{ADMIN}/train_jobs", headers=headers, params={"user_id": user["id"]}))
    assert [j["id"] for j in jobs] == [job["id"]]
    latest = parse(requests.get(f"{ADMIN}/train_jobs/fashion/-1", headers=headers))
    assert latest["budget"]["MODEL_TRIAL_COUNT"] == 3 and latest["train_args"] == {"target": "y"}
    assert parse(requests.get(f"{ADMIN}/train_jobs/fashion/1/trials", headers=headers, params={"limit": 10})) == []
    stopped = parse(requests.post(f"{ADMIN}/train_jobs/fashion/1/stop", headers=headers))
    assert stopped["id"] == job["id"]
    assert parse(requests.get(f"{ADMIN}/train_jobs/fashion/1", headers=headers))["status"] == "STOPPED"
