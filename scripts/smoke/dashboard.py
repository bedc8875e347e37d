"""The dashboard, driven in a real headless Chromium (Debian's chromium and chromium-driver, through
Selenium's WebDriver client): Rafiki's quickstart done in the browser alone, screenshots of each
page saved and checked to be non-blank, and the pages refusing other users' objects exactly as the
API does.

    python scripts/smoke/dashboard.py --admin http://localhost:13000 \
        --superadmin-password ... --artifacts /tmp/dashboard-shots

Run by scripts/smoke against `duma up`.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

import requests
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scenario import write_dataset  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
TASK = "TABULAR_CLASSIFICATION"
DEADLINE = 180


def fail(message):
    raise SystemExit(f"dashboard: {message}")


class Browser:
    """One Chromium session, with the checks every page gets."""

    def __init__(self, admin, artifacts):
        options = Options()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
            options.add_argument(argument)
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")  # Chromium refuses its own sandbox as root
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(60)
        self.admin = admin
        self.artifacts = artifacts
        self.shots = 0

    def quit(self):
        self.driver.quit()

    def wait(self, what, condition, deadline=DEADLINE):
        try:
            return WebDriverWait(self.driver, deadline, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition())
        except TimeoutException:
            self.shot(f"timeout-{what}", check=False)
            error = self.error_text()
            fail(f"{what}: not within {deadline} s at {self.driver.current_url}"
                 + (f" (the page says: {error})" if error else ""))

    def open(self, path):
        self.driver.get(self.admin + path)
        self.console_clean()

    def find(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def finds(self, selector):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def rows(self, table):
        """The text of each data row (not the "nothing yet" row)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
            ".filter((r) => !r.querySelector('td.hint')).map((r) => r.innerText)", table)

    def error_text(self):
        boxes = [e for e in self.finds("#error") if e.is_displayed()]
        return boxes[0].text if boxes else ""

    def console_clean(self):
        """No script error and no Content-Security-Policy violation in the page's console."""
        severe = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"
                  and "favicon.ico" not in e["message"] and " 40" not in e["message"]]
        if severe:
            fail(f"the browser console at {self.driver.current_url} has errors: {severe}")

    def fill(self, form, values):
        for name, value in values.items():
            field = self.find(f"{form} [name={name}]")
            if field.tag_name == "select":
                Select(field).select_by_visible_text(value)
            elif field.get_attribute("type") == "file":
                field.send_keys(value)
            else:
                field.clear()
                field.send_keys(value)

    def submit(self, form):
        self.find(f"{form} button[type=submit]").click()

    def shot(self, name, check=True):
        """Saves a screenshot and checks that the page drew something."""
        self.shots += 1
        path = os.path.join(self.artifacts, f"{self.shots:02d}-{name}.png")
        self.driver.save_screenshot(path)
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
            dominant = max(count for count, _ in colours) / (image.width * image.height) if colours else 1
        if check and (len(colours) < 16 or dominant > 0.97):
            fail(f"the screenshot {path} is blank ({len(colours)} colours, {dominant:.0%} one colour)")
        return path


def sign_in(browser, email, password, expect_path="/ui/train_jobs"):
    """Signs in with the keyboard alone: the email field has focus, Tab, Enter."""
    browser.driver.delete_all_cookies()
    browser.open("/")
    browser.wait("the sign-in page", lambda: "/ui/sign-in" in browser.driver.current_url)
    # The URL changes before the page is laid out and `autofocus` applied: wait for the focus.
    browser.wait("the sign-in page putting the focus on the email field",
                 lambda: browser.driver.switch_to.active_element.get_attribute("name") == "email")
    active = browser.driver.switch_to.active_element
    active.send_keys(email, Keys.TAB, password, Keys.ENTER)
    browser.wait(f"signed in as {email}", lambda: browser.driver.current_url.endswith(expect_path))
    browser.console_clean()


def api_token(admin, email, password):
    response = requests.post(f"{admin}/tokens", json={"email": email, "password": password}, timeout=30)
    response.raise_for_status()
    return response.json()["token"]


def api_token_status(admin, email, password):
    return requests.post(f"{admin}/tokens", json={"email": email, "password": password}, timeout=30).status_code


def write_onnx(path, train_csv):
    """A logistic regression on the training rows, exported by skl2onnx."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rows = np.loadtxt(train_csv, delimiter=",", skiprows=1, dtype=np.float32)
    model = LogisticRegression().fit(rows[:, :2], rows[:, 2].astype(int))
    with open(path, "wb") as f:
        f.write(to_onnx(model, rows[:1, :2], options={id(model): {"zipmap": False}}).SerializeToString())


def api_get(admin, token, path):
    return requests.get(f"{admin}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin", required=True)
    parser.add_argument("--superadmin-password", required=True)
    parser.add_argument("--artifacts", required=True, help="folder for the screenshots")
    args = parser.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    work = tempfile.mkdtemp(prefix="duma-dashboard-")
    train_csv, val_csv = os.path.join(work, "train.csv"), os.path.join(work, "val.csv")
    write_dataset(train_csv, 300, 1)
    write_dataset(val_csv, 80, 2)
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice-{suffix}@example.com", f"bob-{suffix}@example.com"
    password = uuid.uuid4().hex
    app = f"dash-{suffix}"
    template_name = f"centroid-{suffix}"
    browser = Browser(args.admin, args.artifacts)
    try:
        run(args, browser, alice, bob, password, app, template_name, train_csv, val_csv)
    finally:
        browser.quit()
        cleanup(args.admin, alice, password, app)


def cleanup(admin, email, password, app):
    """Frees the workers for the tests after this one: the deployment and the served versions."""
    try:
        token = api_token(admin, email, password)
    except requests.RequestException:
        return  # the user was never made
    headers = {"Authorization": f"Bearer {token}"}
    requests.delete(f"{admin}/deployments/{app}", headers=headers, timeout=30)
    requests.post(f"{admin}/train_jobs/{app}/3/stop", headers=headers, timeout=30)
    for version in (1, 2):
        requests.post(f"{admin}/inference_jobs/{app}/{version}/stop", headers=headers, timeout=30)


def run(args, browser, alice, bob, password, app, template_name, train_csv, val_csv):
    began = time.monotonic()

    def step(name):
        print(f"  {name:<60} {time.monotonic() - began:7.1f} s", flush=True)

    # A wrong password is said in words; then the superadmin signs in with the keyboard.
    browser.driver.get(args.admin + "/ui/sign-in")
    browser.fill("form", {"email": "superadmin@rafiki", "password": "not-the-password"})
    browser.submit("form")
    browser.wait("the wrong-password message", lambda: "wrong password" in browser.error_text())
    browser.shot("sign-in-refused")
    sign_in(browser, "superadmin@rafiki", args.superadmin_password)
    step("signed in as superadmin (keyboard only; a wrong password is refused in words)")

    # Users: the admin creates the two app developers and a model developer's template.
    browser.open("/ui/users")
    carol = alice.replace("alice-", "carol-")
    for email in (alice, bob, carol):
        browser.fill("#new-user", {"email": email, "password": password})
        Select(browser.find("#new-user [name=user_type]")).select_by_visible_text("APP_DEVELOPER")
        browser.submit("#new-user")
        browser.wait(f"{email} listed", lambda email=email: any(email in r for r in browser.rows("#users")))
    row = next(r for r in browser.finds("#users tbody tr") if carol in r.text)
    row.find_element(By.CSS_SELECTOR, "button").click()
    browser.driver.switch_to.alert.accept()
    browser.wait("carol banned", lambda: any(carol in r and "Ban" not in r.split(carol, 1)[1] for r in browser.rows("#users")))
    if api_token_status(args.admin, carol, password) != 401:
        fail("a user banned in the dashboard can still sign in")
    browser.shot("users")
    browser.open("/ui/models")
    browser.fill("#upload-model", {
        "name": template_name, "task": TASK, "model_class": "RafikiCentroid",
        "model_file_bytes": os.path.abspath(os.path.join(REPO, "python/tests/templates/rafiki_centroid.py")),
    })
    Select(browser.find("#upload-model [name=access_right]")).select_by_visible_text("PUBLIC")
    browser.submit("#upload-model")
    browser.wait("the template listed", lambda: any(template_name in r for r in browser.rows("#models")))
    onnx_path = os.path.join(os.path.dirname(train_csv), "logreg.onnx")
    write_onnx(onnx_path, train_csv)
    browser.fill("#upload-model", {"name": f"onnx-{app}", "task": TASK, "model_class": "LogReg", "model_file_bytes": onnx_path})
    Select(browser.find("#upload-model [name=access_right]")).select_by_visible_text("PRIVATE")
    browser.submit("#upload-model")
    browser.wait("the ONNX model listed", lambda: any(f"onnx-{app}" in r for r in browser.rows("#models")))
    browser.shot("models")
    browser.find("#upload-status a").click()
    browser.wait("the ONNX model's inputs", lambda: "probabilities" in browser.find("#signature").text and "FP32" in browser.find("#signature").text)
    onnx_page = browser.driver.current_url.split(args.admin, 1)[1]
    if "onnx" not in browser.find("#model-summary").text or "no knobs" not in browser.find("#knobs").text:
        fail(f"the ONNX model's page: {browser.find('main').text!r}")
    browser.shot("model-onnx")
    # Served as it is, queried through "try it", stopped from the list.
    browser.fill("#serve-model", {"app": f"onnx-{app}"})
    browser.submit("#serve-model")
    browser.wait("the inference jobs page", lambda: browser.driver.current_url.endswith("/ui/inference_jobs"))
    browser.wait("the ONNX model served", lambda: any(o.text == f"onnx-{app} v1" for o in browser.finds("#try-it option")), deadline=300)
    Select(browser.find("#try-it [name=endpoint]")).select_by_visible_text(f"onnx-{app} v1")
    browser.fill("#try-it", {"query": "[2.0, 2.0]"})
    browser.submit("#try-it")
    browser.wait("the ONNX model's prediction", lambda: browser.find("#prediction").text not in ("", "…"))
    onnx_prediction = json.loads(browser.find("#prediction").text)
    if not (isinstance(onnx_prediction, list) and len(onnx_prediction) == 2 and onnx_prediction[1] > 0.5):
        fail(f"the ONNX model predicted {onnx_prediction!r} for a row of class 1")
    row = next(r for r in browser.finds("#inference-jobs tbody tr") if f"onnx-{app}" in r.text)
    row.find_element(By.CSS_SELECTOR, "button").click()
    browser.wait("the ONNX model's job stopped", lambda: any(f"onnx-{app}" in r and "STOPPED" in r for r in browser.rows("#inference-jobs")))
    step("users created, a public template and a private ONNX model uploaded, the ONNX model served, queried and stopped, in the browser")

    # Alice: datasets, with a progress bar, size and checksum.
    sign_in(browser, alice, password)
    browser.open("/ui/datasets")
    for name, path in (("train", train_csv), ("val", val_csv)):
        browser.fill("#upload-dataset", {"name": f"{app}-{name}", "task": TASK, "dataset": path})
        browser.submit("#upload-dataset")
        browser.wait(f"the {name} dataset listed", lambda name=name: any(f"{app}-{name}" in r for r in browser.rows("#datasets")))
    if browser.find("#upload-progress").get_attribute("value") != "100":
        fail("the upload's progress bar did not reach 100")
    status = browser.find("#upload-status").text
    if "SHA-256" not in status:
        fail(f"the upload status shows no checksum: {status!r}")
    browser.shot("datasets")
    step("datasets uploaded (progress bar at 100, SHA-256 shown)")

    # A train job: a bad train_args is refused in words, then the job starts.
    browser.open("/ui/train_jobs/new")
    form = "#new-train-job"
    browser.wait("the model choices", lambda: browser.finds(f"{form} [name=model_ids]"))
    for box in browser.finds(f"{form} [name=model_ids]"):
        label = box.find_element(By.XPATH, "..").text.strip()
        if box.is_selected() != (label in (template_name, "LogisticRegression")):
            box.click()
    browser.fill(form, {"app": app, "MODEL_TRIAL_COUNT": "3", "train_args": "{not json"})
    browser.submit(form)
    browser.wait("the bad train args message", lambda: "Train args is not valid JSON" in browser.error_text())
    browser.fill(form, {"train_args": json.dumps({"features": ["x1", "x2"], "target": "y"}), "MODEL_TRIAL_COUNT": "0"})
    browser.submit(form)
    browser.wait("the budget refusal", lambda: "MODEL_TRIAL_COUNT must be from 1" in browser.error_text())
    browser.shot("train-job-refused")
    browser.fill(form, {"MODEL_TRIAL_COUNT": "3", "TIME_HOURS": "0.2"})
    browser.submit(form)
    browser.wait("the job page", lambda: f"/ui/train_jobs/{app}/1" in browser.driver.current_url)
    step("train job refused twice in words, then started")

    # Trials appear live: the page is not reloaded (a marker set on it survives).
    browser.driver.execute_script("window.stillThisPage = true")
    browser.wait("a trial row", lambda: browser.rows("#trials"))
    browser.wait("the job to stop", lambda: "STOPPED" in browser.find("#job-summary").text, deadline=600)
    browser.wait("six trials", lambda: len(browser.rows("#trials")) == 6 and all("COMPLETED" in r for r in browser.rows("#trials")))
    if not browser.driver.execute_script("return window.stillThisPage === true"):
        fail("the job page was reloaded to show its trials")
    if not browser.finds("#chart-best svg circle") or not browser.finds("#chart-scores svg circle"):
        fail("the job page drew no score chart")
    if browser.find("#budget-text").text != "6 of 6 trials":
        fail(f"the budget progress says {browser.find('#budget-text').text!r}")
    browser.shot("train-job")
    step("trials appeared live; charts and budget progress drawn")

    # A trial of the template: its knobs, log and the loss plot it defined.
    link = next(r.find_element(By.CSS_SELECTOR, "a") for r in browser.finds("#trials tbody tr") if template_name in r.text)
    trial_id = link.get_attribute("href").rsplit("/", 1)[1]
    link.click()
    browser.wait("the trial's plot", lambda: browser.finds("#plots figure svg circle"))
    caption = browser.find("#plots figcaption").text
    if caption != "Loss Over Epochs":
        fail(f"the trial's plot is titled {caption!r}")
    if "temperature" not in browser.find("#trial-knobs").text or "training on" not in browser.find("#messages").text:
        fail("the trial page lacks its knobs or its log")
    browser.shot("trial")
    browser.open("/ui/models")
    browser.wait("the template listed", lambda: any(template_name in r for r in browser.rows("#models")))
    row = next(r for r in browser.finds("#models tbody tr") if template_name in r.text)
    row.find_element(By.CSS_SELECTOR, "summary").click()
    knobs = row.find_element(By.CSS_SELECTOR, "details").text
    if "temperature" not in knobs or "Float" not in knobs:
        fail(f"the template's knob space, read by the workers, is not shown: {knobs!r}")
    step("trial page: knobs, log and its loss plot drawn; the template's knob space shown")

    # Serve the best trials; predict through the "try it" box.
    browser.open(f"/ui/train_jobs/{app}/1")
    browser.wait("the serve button", lambda: browser.find("#deploy-job").is_displayed())
    browser.find("#deploy-job").click()
    browser.wait("the inference jobs page", lambda: browser.driver.current_url.endswith("/ui/inference_jobs"))
    browser.wait("a running predictor to try", lambda: browser.finds("#try-it option"), deadline=300)
    browser.fill("#try-it", {"query": json.dumps({"x1": 2.1, "x2": 1.9})})
    browser.submit("#try-it")
    browser.wait("a prediction", lambda: browser.find("#prediction").text not in ("", "…"))
    prediction = json.loads(browser.find("#prediction").text)
    browser.shot("inference-jobs")
    step(f"served; the try-it box predicted {json.dumps(prediction)[:60]}")

    # Version 2 (trained and served through the API), a deployment, a switch and a rollback.
    token = api_token(args.admin, alice, password)
    headers = {"Authorization": f"Bearer {token}"}
    datasets = {d["name"]: d["id"] for d in api_get(args.admin, token, "/datasets").json()}
    logistic = [m["id"] for m in api_get(args.admin, token, f"/models/available?task={TASK}").json() if m["name"] == "LogisticRegression"]
    requests.post(f"{args.admin}/train_jobs", headers=headers, timeout=30, json={
        "app": app, "task": TASK, "train_dataset_id": datasets[f"{app}-train"], "val_dataset_id": datasets[f"{app}-val"],
        "model_ids": logistic, "budget": {"MODEL_TRIAL_COUNT": 1},
        "train_args": {"features": ["x1", "x2"], "target": "y"}}).raise_for_status()
    browser.open("/ui/deployments")
    browser.fill("#new-deployment", {"name": app, "app": app, "app_version": "1"})
    browser.submit("#new-deployment")
    browser.wait("the deployment page", lambda: browser.driver.current_url.endswith(f"/ui/deployments/{app}"))
    browser.wait("version 1 served", lambda: "v1" in browser.find("#routes").text)
    browser.wait("v2 trained", lambda: api_get(args.admin, token, f"/train_jobs/{app}/2").json()["status"] == "STOPPED")
    requests.post(f"{args.admin}/inference_jobs", headers=headers, json={"app": app, "app_version": 2}, timeout=30).raise_for_status()
    browser.wait("v2 serving", lambda: api_get(args.admin, token, f"/inference_jobs/{app}/2").json()["status"] == "RUNNING")
    browser.fill("#switch-version", {"app_version": "2"})
    browser.submit("#switch-version")
    browser.wait("the switch to v2", lambda: "v2" in browser.find("#routes").text and "v1" not in browser.find("#routes").text
                 and "Switching" not in browser.find("#deployment-summary").text)
    browser.fill("#try-it", {"query": json.dumps({"x1": -2.0, "x2": -2.2})})
    browser.submit("#try-it")
    browser.wait("a prediction from the deployment", lambda: browser.find("#prediction").text not in ("", "…"))
    browser.shot("deployment")
    browser.find("#rollback").click()
    browser.wait("the rollback to v1", lambda: "v1" in browser.find("#routes").text and "v2" not in browser.find("#routes").text
                 and "Switching" not in browser.find("#deployment-summary").text)
    step("deployed v1, switched to v2, predicted, rolled back to v1")

    # Its traffic, from the services' own metrics through Prometheus, drawn per version.
    endpoint = api_get(args.admin, token, f"/deployments/{app}").json()["url"]
    for i in range(40):
        requests.post(endpoint, json={"query": {"x1": i / 10, "x2": 1.0}}, timeout=30).raise_for_status()
        time.sleep(0.25)

    def counted():
        metrics = api_get(args.admin, token, f"/deployments/{app}/metrics?minutes=5").json()
        return any(v > 0 for points in metrics["requests_per_second"].values() for _, v in points)
    browser.wait("Prometheus to count the deployment's requests", counted, deadline=120)
    browser.wait("the traffic charts", lambda: browser.finds("#chart-requests svg .series")
                 and browser.finds("#chart-latency svg .series"), deadline=60)
    browser.driver.execute_script("document.getElementById('traffic-title').scrollIntoView()")
    browser.shot("deployment-traffic")
    step("the deployment's request rate and latency drawn from Prometheus")

    # Both versions evaluated on the validation set (through the API), compared in the browser.
    for version in (1, 2):
        created = requests.post(f"{args.admin}/evaluations", headers=headers, timeout=30, json={
            "dataset_id": datasets[f"{app}-val"], "app": app, "app_version": version})
        created.raise_for_status()
        evaluation = created.json()["id"]
        browser.wait(f"v{version} evaluated", lambda evaluation=evaluation: api_get(
            args.admin, token, f"/evaluations/{evaluation}").json()["status"] in ("COMPLETED", "ERRORED"))
        finished = api_get(args.admin, token, f"/evaluations/{evaluation}").json()
        if finished["status"] != "COMPLETED":
            fail(f"the evaluation of v{version} ended {finished['status']}: {finished.get('error')}")
    browser.open("/ui/evaluations")
    browser.wait("the evaluations listed", lambda: len(browser.rows("#evaluations")) >= 2)
    browser.fill("#compare", {"app": app})
    browser.submit("#compare")
    browser.wait("two versions side by side", lambda: len(browser.finds("#comparison figure")) == 2)
    matrices = browser.finds("#comparison table.confusion")
    if len(matrices) != 2 or "accuracy" not in browser.find("#comparison").text:
        fail(f"the comparison shows {len(matrices)} confusion matrices: {browser.find('#comparison').text!r}")
    browser.shot("evaluations")
    step("v1 and v2 evaluated; compared side by side with confusion matrices")

    # A long job (v3) stopped from its page.
    requests.post(f"{args.admin}/train_jobs", headers=headers, timeout=30, json={
        "app": app, "task": TASK, "train_dataset_id": datasets[f"{app}-train"], "val_dataset_id": datasets[f"{app}-val"],
        "model_ids": logistic, "budget": {"MODEL_TRIAL_COUNT": 1000},
        "train_args": {"features": ["x1", "x2"], "target": "y"}}).raise_for_status()
    browser.open(f"/ui/train_jobs/{app}/3")
    browser.wait("a trial of v3", lambda: browser.rows("#trials"))
    browser.find("#stop-job").click()
    browser.wait("v3 stopped from its page", lambda: "STOPPED" in browser.find("#job-summary").text
                 and not browser.find("#stop-job").is_displayed())
    step("a running job stopped from its page")

    # Phone width: the pages fit; the keyboard reaches the navigation.
    browser.driver.set_window_size(390, 844)
    for path in ("/ui/train_jobs", f"/ui/train_jobs/{app}/1", f"/ui/trials/{trial_id}", f"/ui/deployments/{app}"):
        browser.open(path)
        browser.wait(f"{path} filled", lambda: not browser.finds("main tbody td.hint") or browser.rows("main table"))
        overflow = browser.driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 1:
            fail(f"{path} is {overflow} px wider than a phone's screen")
    browser.shot("phone-trial")
    browser.driver.set_window_size(1280, 900)
    browser.open("/ui/train_jobs")
    body = browser.find("body")
    body.send_keys(Keys.TAB)
    if browser.driver.switch_to.active_element.text != "Skip to content":
        fail("the first Tab does not reach the skip link")
    step("phone width fits; keyboard reaches the skip link")

    # Bob sees Alice's objects refused exactly as the API refuses them.
    bob_token = api_token(args.admin, bob, password)
    sign_in(browser, bob, password)
    for page, api_path in ((f"/ui/train_jobs/{app}/1", None), (f"/ui/trials/{trial_id}", f"/trials/{trial_id}"),
                           (f"/ui/deployments/{app}", f"/deployments/{app}")):
        browser.open(page)
        browser.wait(f"{page} refused", lambda: browser.error_text())
        shown = browser.error_text()
        if api_path:
            said = api_get(args.admin, bob_token, api_path).json()["message"]
            if said not in shown:
                fail(f"{page} shows {shown!r}, the API says {said!r}")
    browser.open(onnx_page)
    browser.wait("the private model refused", lambda: browser.error_text())
    said = api_get(args.admin, bob_token, "/models/" + onnx_page.rsplit("/", 1)[1]).json()["message"]
    if said not in browser.error_text():
        fail(f"{onnx_page} shows {browser.error_text()!r}, the API says {said!r}")
    # A form naming Alice's app: the API's refusal, word for word.
    request = {"name": f"bob-{app}", "app": app, "app_version": 1}
    said = requests.post(f"{args.admin}/deployments", json=request, timeout=30,
                         headers={"Authorization": f"Bearer {bob_token}"})
    if said.ok:
        fail(f"the API let bob deploy alice's app: {said.text}")
    browser.open("/ui/deployments")
    browser.fill("#new-deployment", {"name": request["name"], "app": app, "app_version": "1"})
    browser.submit("#new-deployment")
    browser.wait("the deployment form refused", lambda: browser.error_text())
    if said.json()["message"] not in browser.error_text():
        fail(f"the deployment form shows {browser.error_text()!r}, the API says {said.json()['message']!r}")
    browser.open("/ui/datasets")
    browser.wait("bob's empty dataset list", lambda: browser.finds("#datasets tbody td.hint"))
    browser.shot("refused")
    step("another user's job, trial, deployment, private model and app (in a form) refused with the API's words")

    # The session cookie is HttpOnly and SameSite; unsafe requests need the CSRF value.
    cookie = browser.driver.get_cookie("duma_session")
    if not cookie or not cookie["httpOnly"] or cookie.get("sameSite") != "Strict":
        fail(f"the session cookie is not HttpOnly and SameSite=Strict: {cookie}")
    jar = {"duma_session": cookie["value"]}
    forged = requests.post(f"{args.admin}/train_jobs", cookies=jar, json={"app": "forged"}, timeout=30)
    if forged.status_code != 403 or "X-CSRF-Token" not in forged.json()["message"]:
        fail(f"a cookie-only POST was not refused for its CSRF token: {forged.status_code} {forged.text}")
    wrong = requests.post(f"{args.admin}/train_jobs", cookies=jar, json={"app": "forged"}, headers={"X-CSRF-Token": "0" * 32}, timeout=30)
    if wrong.status_code != 403:
        fail(f"a wrong CSRF token was not refused: {wrong.status_code} {wrong.text}")
    if requests.get(f"{args.admin}/datasets", cookies=jar, timeout=30).status_code != 200:
        fail("the session cookie does not read the API")
    browser.find(".who button").click()
    browser.wait("signed out", lambda: "/ui/sign-in" in browser.driver.current_url)
    if browser.driver.get_cookie("duma_session"):
        fail("signing out left the session cookie")
    browser.open("/ui/datasets")
    browser.wait("a signed-out page sent to sign in", lambda: "/ui/sign-in?next=%2Fui%2Fdatasets" in browser.driver.current_url)
    step("cookie HttpOnly+Strict; CSRF enforced; signed out")
    print(f"dashboard: {browser.shots} screenshots in {args.artifacts}")


if __name__ == "__main__":
    sys.exit(main())
