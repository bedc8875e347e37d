"""Rafiki-style example templates through the whole platform, with SINGA-Auto's own client: an
image classifier trained on an image zip and a POS tagger trained on a corpus zip (both in
`python/tests/templates/`, importing scikit-learn, Pillow and numpy without declaring them),
each deployed and queried at `http://{predictor_host}/predict` — with the host and port split
apart, as client code does — the image classifier with JSON images and with SINGA-Auto's
multipart upload of image files (`img`).

    .venv-singa-auto/bin/python scripts/smoke/rafiki_examples.py --admin-port 13000 \
        --superadmin-password ...

Run by scripts/smoke/run local.
"""

import argparse
import csv
import io
import os
import random
import tempfile
import uuid
import zipfile

import requests
from PIL import Image
from singa_auto.client import Client

from checks import Checks

DEADLINE = 300.0
TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "..", "python", "tests", "templates")
SIZE = 12


check, step, wait_for = Checks("rafiki examples", deadline=DEADLINE).tools()


def image(label, rng):
    """Class 0: a dark image with a bright horizontal bar; class 1: a bright one with a dark
    vertical bar; both noisy, in colour."""
    base, bar = (40, 220) if label == 0 else (210, 30)
    picture = Image.new("RGB", (SIZE, SIZE))
    where = rng.randrange(2, SIZE - 2)
    for x in range(SIZE):
        for y in range(SIZE):
            on_bar = (y == where) if label == 0 else (x == where)
            level = (bar if on_bar else base) + rng.randint(-20, 20)
            picture.putpixel((x, y), (level, max(level - 10, 0), min(level + 10, 255)))
    return picture


def png(picture):
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def image_zip(path, count, seed):
    """Rafiki's image dataset: `images.csv` (path,class) and the images, in a zip."""
    rng = random.Random(seed)
    rows = io.StringIO()
    table = csv.writer(rows)
    table.writerow(["path", "class"])
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            label = i % 2
            archive.writestr(f"images/{i}.png", png(image(label, rng)))
            table.writerow([f"images/{i}.png", label])
        archive.writestr("images.csv", rows.getvalue())


DETERMINERS = ["the", "a", "this", "every"]
NOUNS = ["dog", "cat", "model", "worker", "query", "table"]
VERBS = ["runs", "sleeps", "learns", "waits", "answers"]


def sentence(rng):
    return [(rng.choice(DETERMINERS), 0), (rng.choice(NOUNS), 1), (rng.choice(VERBS), 2)]


def corpus_zip(path, count, seed):
    """Rafiki's corpus dataset: `corpus.tsv` (token, tag), sentences split by a `\\n` token."""
    rng = random.Random(seed)
    lines = ["token\ttag"]
    for _ in range(count):
        lines += [f"{token}\t{tag}" for token, tag in sentence(rng)]
        lines.append("\\n\t0")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("corpus.tsv", "\n".join(lines) + "\n")


def created(what, body):
    check(isinstance(body, dict) and "id" in body, f"{what} refused: {body}")
    return body


def train(client, app, task, train, val, model):
    client.create_train_job(app, task, train["id"], val["id"], {"MODEL_TRIAL_COUNT": 2},
                            models=[model["id"]])
    ended = wait_for(f"{app} to end", lambda: (lambda j: j if j["status"] in ("STOPPED", "ERRORED")
                                                   else None)(client.get_train_job(app)))
    check(ended["status"] == "STOPPED", ended)
    best = client.get_best_trials_of_train_job(app, max_count=1)
    check(best and best[0]["score"] > 0.9, f"{app}: best trial {best}")
    print(f"    best validation accuracy {best[0]['score']:.3f}", flush=True)


def serve(client, app):
    """Deploys `app`; its predict URL, from `predictor_host` split into host and port."""
    client.create_inference_job(app)
    job = wait_for(f"{app} to be served", lambda: (lambda j: j if j["status"] == "RUNNING" else None)(
        client.get_running_inference_job(app)))
    host, _, port = job["predictor_host"].partition(":")
    check(host and port.isdigit(), f"predictor_host {job['predictor_host']!r} is not host:port")
    return f"http://{host}:{int(port)}/predict"


def predict(url, **request):
    """The first 200 (the job's replicas may still be loading), as JSON."""
    return wait_for("a prediction", lambda: (lambda r: r.json() if r.status_code == 200 else
                                             (None if r.status_code >= 500 else check(False, r.text)))(
        requests.post(url, timeout=30, **request)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-host", default="localhost")
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--superadmin-password", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="duma-rafiki-examples-")
    run = uuid.uuid4().hex[:8]

    quiet()
    admin = Client(admin_host=args.admin_host, admin_port=args.admin_port)
    admin.login("superadmin@rafiki", args.superadmin_password)
    email, password = f"examples-{run}@duma.test", uuid.uuid4().hex
    admin.create_user(email, password, "MODEL_DEVELOPER")
    dev = Client(admin_host=args.admin_host, admin_port=args.admin_port)
    dev.login(email, password)

    files = {name: os.path.join(work, name) for name in
             ("images-train.zip", "images-val.zip", "corpus-train.zip", "corpus-val.zip")}
    image_zip(files["images-train.zip"], 60, 1)
    image_zip(files["images-val.zip"], 30, 2)
    corpus_zip(files["corpus-train.zip"], 80, 3)
    corpus_zip(files["corpus-val.zip"], 30, 4)
    images, pos = "IMAGE_CLASSIFICATION", "POS_TAGGING"
    datasets = step("create_dataset x4 (image zips, corpus zips)", lambda: {
        name: created(name, dev.create_dataset(f"{name}-{run}", images if "images" in name else pos, path))
        for name, path in files.items()})
    tree = created("image model", dev.create_model(
        f"image-tree-{run}", images, os.path.join(TEMPLATES, "rafiki_image_tree.py"), "RafikiImageTree"))
    tagger = created("pos model", dev.create_model(
        f"pos-tagger-{run}", pos, os.path.join(TEMPLATES, "rafiki_pos_tagger.py"), "RafikiPosTagger"))

    step("image classifier: train 2 trials", lambda: train(
        dev, f"images-{run}", images, datasets["images-train.zip"], datasets["images-val.zip"], tree))
    image_url = step("image classifier: deploy (until RUNNING)", lambda: serve(dev, f"images-{run}"))
    rng = random.Random(5)
    pictures = [image(label, rng) for label in (0, 1, 1, 0)]
    as_json = [[list(map(list, row)) for row in _rows(picture)] for picture in pictures]
    answer = step("predict: JSON images (H x W x 3 lists)", lambda: predict(image_url, json={"queries": as_json}))
    check([max(range(2), key=p.__getitem__) for p in answer["predictions"]] == [0, 1, 1, 0], answer)
    uploads = [("img", (f"{i}.png", png(picture), "image/png")) for i, picture in enumerate(pictures)]
    uploaded = step("predict: multipart image files (`img`)", lambda: predict(image_url, files=uploads))
    check(uploaded["predictions"] == answer["predictions"], f"{uploaded} != {answer}")
    refused = requests.post(image_url, files=[("img", ("x.png", b"not an image", "image/png"))], timeout=30)
    check(refused.status_code == 400 and "not a PNG" in refused.json()["message"], refused.text)

    step("POS tagger: train 2 trials", lambda: train(
        dev, f"pos-{run}", pos, datasets["corpus-train.zip"], datasets["corpus-val.zip"], tagger))
    pos_url = step("POS tagger: deploy (until RUNNING)", lambda: serve(dev, f"pos-{run}"))
    tagged = step("predict: sentences", lambda: predict(pos_url, json={"queries": [
        ["the", "cat", "sleeps"], ["every", "query", "waits"], ["a", "newword", "runs"]]}))
    check(tagged["predictions"] == [[0, 1, 2], [0, 1, 2], [0, 1, 2]], tagged)
    refused = requests.post(pos_url, files=[("img", ("x.png", png(pictures[0]), "image/png"))], timeout=30)
    check(refused.status_code == 400 and "image tasks" in refused.json()["message"], refused.text)

    for app in (f"images-{run}", f"pos-{run}"):
        dev.stop_inference_job(app)
    print("rafiki examples: trained, served and answered")


def quiet():
    """SINGA-Auto's client prints upload progress and request bodies: only its module's own
    `print` is silenced, so the step's output is its timings."""
    import singa_auto.client.client as module
    module.print = lambda *args, **kwargs: None


def _rows(picture):
    width, height = picture.size
    return [[picture.getpixel((x, y)) for x in range(width)] for y in range(height)]


if __name__ == "__main__":
    main()
