// Duma's dashboard: each page's data from the JSON API, fetched with the session cookie.
// No framework and no build step: elements are made with `el` (text is never parsed as HTML),
// charts are SVG drawn here, and live pages poll with a deadline on every request.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const REQUEST_DEADLINE_MS = 15000;
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const TERMINAL = ["STOPPED", "ERRORED", "COMPLETED", "CANCELLED"];

// ---------------------------------------------------------------- elements

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector, root = document) => root.querySelector(selector);
const main = document.getElementById("main");
const page = main?.dataset ?? {};
const enc = encodeURIComponent;

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (!rows.length) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.append(el("tr", {}, el("td", { colspan: columns, class: "hint", text: empty })));
  }
}

function facts(dl, pairs) {
  dl.replaceChildren(
    ...pairs.filter(([, v]) => v !== undefined && v !== null && v !== "")
      .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}

function when(text) {
  if (!text) return "";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

function seconds(from, to) {
  const start = Date.parse(from);
  const end = to ? Date.parse(to) : Date.now();
  if (Number.isNaN(start) || Number.isNaN(end)) return "";
  const s = Math.max(0, (end - start) / 1000);
  if (s < 1) return "< 1 s";
  return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function score(value) {
  return typeof value === "number" ? value.toFixed(4) : "—";
}

function status(text) {
  return el("span", { class: `status status-${String(text).toLowerCase()}`, text });
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.message) message = body.message;
    else if (body && body.error) message = body.error;
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, message);
}

// One request to the admin's JSON API; unsafe methods carry the session's CSRF value.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = CSRF;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: payload, credentials: "same-origin",
      signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
    });
  } catch (error) {
    throw new ApiError(0, error.name === "TimeoutError"
      ? `the admin did not answer ${method} ${path} within ${REQUEST_DEADLINE_MS / 1000} s`
      : `the admin could not be reached (${error.message})`);
  }
  if (response.status === 401) {
    window.location.assign(`/ui/sign-in?next=${enc(location.pathname)}`);
    throw new ApiError(401, "your session has ended; sign in again");
  }
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

// An upload with a progress bar (fetch cannot report upload progress).
function upload(path, form, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("X-CSRF-Token", CSRF);
    request.setRequestHeader("Accept", "application/json");
    request.timeout = 30 * 60 * 1000;
    progress.hidden = false;
    progress.value = 0;
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) progress.value = (100 * event.loaded) / event.total;
    };
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (_) { /* keep null */ }
      if (request.status === 401) {
        window.location.assign(`/ui/sign-in?next=${enc(location.pathname)}`);
        reject(new ApiError(401, "your session has ended; sign in again"));
      } else if (request.status >= 200 && request.status < 300) {
        progress.value = 100;
        resolve(body);
      } else {
        reject(new ApiError(request.status, body?.message ?? `${request.status} ${request.statusText}`));
      }
    };
    request.onerror = () => reject(new ApiError(0, "the upload failed: the admin could not be reached"));
    request.ontimeout = () => reject(new ApiError(0, "the upload took longer than 30 minutes"));
    request.send(form);
  });
}

// ---------------------------------------------------------------- errors and forms

const errorBox = document.getElementById("error");

function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  if (!errorBox) return;
  errorBox.replaceChildren(el("strong", { text: "Error: " }), message,
    el("button", { type: "button", class: "dismiss", "aria-label": "Dismiss", text: "×",
      onclick: () => { errorBox.hidden = true; } }));
  errorBox.hidden = false;
  errorBox.scrollIntoView({ block: "nearest" });
}

function clearError() {
  if (errorBox) errorBox.hidden = true;
}

// Runs `action` for a form's submission; its button is disabled meanwhile and errors are shown.
function onSubmit(form, action) {
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    clearError();
    try {
      await action(new FormData(form));
    } catch (error) {
      showError(error);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
}

async function guarded(action) {
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

// A page restored from the browser's back-forward cache has stopped timers: load it afresh.
window.addEventListener("pageshow", (event) => { if (event.persisted) window.location.reload(); });

// Whether asking again cannot help: a refusal (unknown, not yours, bad request).
function final(error) {
  return error instanceof ApiError && error.status >= 400 && error.status < 500 && ![408, 429].includes(error.status);
}

// Runs `refresh` every `interval` ms until it returns true (nothing left to change), a refusal,
// or the page is left; waits while the page is hidden; backs off (to 30 s) while failing. Its
// `wake()` refreshes now and resumes a poller that had finished (after a user's action).
function poll(refresh, interval = POLL_MS) {
  let timer = null;
  let running = false;
  let failures = 0;
  let shown = false; // whether the error box holds this poller's error
  const schedule = (ms) => { clearTimeout(timer); timer = setTimeout(tick, ms); };
  async function tick() {
    if (running) return;
    if (document.hidden) {
      document.addEventListener("visibilitychange", tick, { once: true });
      return;
    }
    running = true;
    let done = false;
    try {
      done = await refresh();
      failures = 0;
      if (shown) clearError();
      shown = false;
    } catch (error) {
      showError(error);
      shown = true;
      failures += 1;
      done = final(error);
    } finally {
      running = false;
    }
    if (!done) schedule(Math.min(30000, interval * 2 ** Math.min(failures, 4)));
  }
  tick();
  return { wake: () => schedule(0) };
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

// ---------------------------------------------------------------- charts

// A line (and dots) chart of series [{name, points: [[x, y], ...]}], drawn as SVG.
function lineChart(series, { xLabel = "", yLabel = "", stepped = false, dots = true, xDomain = null } = {}) {
  const width = 560;
  const height = 260;
  const pad = { left: 56, right: 16, top: 24, bottom: 40 };
  const points = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "plot" });
  if (!points.length) {
    chart.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
    return chart;
  }
  let [x0, x1] = xDomain ?? [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const axes = svg("g", { class: "axis" },
    svg("line", { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom }),
    svg("line", { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom }));
  for (let i = 0; i <= 4; i += 1) {
    const y = y0 + ((y1 - y0) * i) / 4;
    axes.append(svg("text", { x: pad.left - 6, y: sy(y) + 4, "text-anchor": "end" }, Number(y.toPrecision(3))));
    const x = x0 + ((x1 - x0) * i) / 4;
    axes.append(svg("text", { x: sx(x), y: height - pad.bottom + 16, "text-anchor": "middle" }, Number(x.toPrecision(3))));
  }
  axes.append(svg("text", { x: (width + pad.left) / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  axes.append(svg("text", { x: pad.left, y: 12, "text-anchor": "start" }, yLabel));
  chart.append(axes);
  series.forEach((s, index) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
    const group = svg("g", { class: `series series-${index % 6}` }, svg("title", {}, s.name));
    let path = "";
    pts.forEach(([x, y], i) => {
      if (i === 0) path += `M${sx(x)},${sy(y)}`;
      else if (stepped) path += `H${sx(x)}V${sy(y)}`;
      else path += `L${sx(x)},${sy(y)}`;
    });
    if (pts.length > 1) group.append(svg("path", { d: path, fill: "none" }));
    if (dots || pts.length === 1) {
      for (const [x, y] of pts) {
        group.append(svg("circle", { cx: sx(x), cy: sy(y), r: 3.5 }, svg("title", {}, `${s.name}: ${y} at ${x}`)));
      }
    }
    chart.append(group);
  });
  if (series.length > 1) {
    const legend = svg("g", { class: "legend" });
    series.forEach((s, index) => {
      legend.append(svg("text", { x: width - pad.right, y: pad.top + 4 + index * 14, "text-anchor": "end", class: `series-${index % 6}` }, s.name));
    });
    chart.append(legend);
  }
  return chart;
}

// ---------------------------------------------------------------- pages

const pages = {};

pages.datasets = async () => {
  const tbody = $("#datasets tbody");
  const refresh = async () => {
    const datasets = await api("GET", "/datasets");
    fill(tbody, datasets.map((d) => el("tr", {},
      el("td", { text: d.name }), el("td", { text: d.task }), el("td", { text: bytes(d.size_bytes) }),
      el("td", {}, el("code", { title: d.sha256, text: `${d.sha256.slice(0, 12)}…` })),
      el("td", { text: when(d.datetime_created) }), el("td", {}, el("code", { text: d.id })))),
    "No dataset yet: upload one above.");
  };
  onSubmit($("#upload-dataset"), async (form) => {
    const created = await upload("/datasets", form, $("#upload-progress"));
    $("#upload-status").textContent = `Uploaded ${created.name}: ${bytes(created.size_bytes)}, SHA-256 ${created.sha256}`;
    $("#upload-dataset").reset();
    await refresh();
  });
  await refresh();
};

pages.models = async () => {
  const tbody = $("#models tbody");
  const refresh = async () => {
    const models = await api("GET", "/models/available");
    // A model's own page is its owner's (and admins'), as in the API; its knobs are shown to all.
    const mine = (m) => m.user_id === page.userId || ["ADMIN", "SUPERADMIN"].includes(page.userType);
    fill(tbody, models.map((m) => el("tr", {},
      el("td", {}, mine(m) ? el("a", { href: `/ui/models/${m.id}`, text: m.name }) : m.name), el("td", { text: m.task }),
      el("td", { text: m.user_id === page.userId ? `${m.access_right} (yours)` : m.access_right }),
      el("td", {}, knobsSummary(m.knob_config)),
      el("td", { text: when(m.datetime_created) }))), "No model available.");
  };
  onSubmit($("#upload-model"), async (form) => {
    const created = await upload("/models", form, $("#upload-progress"));
    $("#upload-status").replaceChildren("Uploaded ", el("a", { href: `/ui/models/${created.id}`, text: created.name }));
    $("#upload-model").reset();
    await refresh();
  });
  await refresh();
};

function knobsSummary(config) {
  const knobs = Object.entries(config ?? {});
  if (!knobs.length) return el("span", { class: "hint", text: config ? "none" : "not read yet" });
  return el("details", {}, el("summary", { text: `${knobs.length} knobs` }),
    el("ul", { class: "knob-list" }, ...knobs.map(([name, knob]) => el("li", {}, el("code", { text: name }), ` ${knob.type.replace("Knob", "")}: ${knobSpace(knob)}`))));
}

function knobSpace(knob) {
  switch (knob.type) {
    case "FixedKnob": return JSON.stringify(knob.value);
    case "CategoricalKnob": return knob.values.map((v) => JSON.stringify(v)).join(", ");
    case "IntegerKnob":
    case "FloatKnob": return `${knob.min} … ${knob.max}${knob.is_exp ? " (log scale)" : ""}`;
    case "PolicyKnob": return knob.policy;
    case "ArchKnob": return `${knob.items.length} choices`;
    default: return JSON.stringify(knob);
  }
}

pages.model = async () => {
  const model = await api("GET", `/models/${enc(page.modelId)}`);
  $("#model-name").textContent = model.name;
  document.title = `${model.name} · Duma`;
  facts($("#model-summary"), [["Task", model.task], ["Kind", model.template_kind], ["Class", model.model_class],
    ["Access", model.access_right], ["Created", when(model.datetime_created)],
    ["Description", model.model_description], ["Id", el("code", { text: model.id })]]);
  const knobs = Object.entries(model.knob_config ?? {});
  fill($("#knobs tbody"), knobs.map(([name, knob]) => el("tr", {},
    el("td", { text: name }), el("td", { text: knob.type }), el("td", { text: knobSpace(knob) }))),
  model.template_kind === "onnx" ? "An ONNX model has no knobs: it is served as uploaded."
    : "Not known yet: the knob space is read when the template first trains.");
  const serve = $("#serve-model");
  serve.hidden = !(model.template_kind === "onnx" || model.checkpoint);
  onSubmit(serve, async (form) => {
    await api("POST", "/inference_jobs", { app: form.get("app"), model_id: model.id });
    window.location.assign("/ui/inference_jobs");
  });
  if (model.signature) {
    $("#signature-section").hidden = false;
    $("#signature").textContent = JSON.stringify(model.signature, null, 2);
  }
};

pages.train_jobs = async () => {
  const jobs = await api("GET", `/train_jobs?user_id=${enc(page.userId)}`);
  fill($("#train-jobs tbody"), jobs.map((j) => el("tr", {},
    el("td", {}, el("a", { href: `/ui/train_jobs/${enc(j.app)}/${j.app_version}`, text: j.app })),
    el("td", { text: j.app_version }), el("td", { text: j.task }), el("td", {}, status(j.status)),
    el("td", { text: when(j.datetime_started) }), el("td", { text: when(j.datetime_stopped) }))),
  "No train job yet.");
};

pages.train_job_new = async () => {
  const form = $("#new-train-job");
  const datasets = await api("GET", "/datasets");
  const task = form.elements.task;
  const refresh = async () => {
    const mine = datasets.filter((d) => d.task === task.value);
    for (const name of ["train_dataset_id", "val_dataset_id"]) {
      form.elements[name].replaceChildren(...mine.map((d) => el("option", { value: d.id, text: `${d.name} (${bytes(d.size_bytes)})` })));
    }
    if (mine.length > 1) form.elements.val_dataset_id.selectedIndex = 1;
    const models = await api("GET", `/models/available?task=${enc(task.value)}`);
    $("#model-choices").replaceChildren(...(models.length ? models.map((m) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "model_ids", value: m.id, checked: true }), ` ${m.name}`))
      : [el("p", { class: "hint", text: `No model for ${task.value}.` })]));
  };
  task.addEventListener("change", () => guarded(refresh));
  onSubmit(form, async (data) => {
    const budget = {};
    for (const key of ["MODEL_TRIAL_COUNT", "TIME_HOURS", "GPU_COUNT"]) {
      if (data.get(key) !== "") budget[key] = Number(data.get(key));
    }
    if (!data.get("train_dataset_id")) throw new Error(`upload a ${task.value} dataset first (Datasets)`);
    const request = {
      app: data.get("app"), task: data.get("task"),
      train_dataset_id: data.get("train_dataset_id"), val_dataset_id: data.get("val_dataset_id"),
      model_ids: data.getAll("model_ids"), budget,
      train_args: parseJson(data.get("train_args") || "{}", "Train args"),
    };
    const created = await api("POST", "/train_jobs", request);
    window.location.assign(`/ui/train_jobs/${enc(created.app)}/${created.app_version}`);
  });
  await refresh();
};

function knobsText(proposal) {
  const knobs = proposal?.knobs ?? proposal ?? {};
  return Object.entries(knobs).map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toPrecision(4)) : JSON.stringify(v)}`).join(", ");
}

pages.train_job = async () => {
  const base = `/train_jobs/${enc(page.app)}/${enc(page.appVersion)}`;
  const stop = $("#stop-job");
  const deploy = $("#deploy-job");
  stop.addEventListener("click", () => guarded(async () => {
    stop.disabled = true;
    await api("POST", `${base}/stop`);
  }));
  deploy.addEventListener("click", () => guarded(async () => {
    deploy.disabled = true;
    try {
      await api("POST", "/inference_jobs", { app: page.app, app_version: Number(page.appVersion) });
      window.location.assign("/ui/inference_jobs");
    } finally {
      deploy.disabled = false;
    }
  }));
  poll(async () => {
    const [job, trials] = await Promise.all([api("GET", base), api("GET", `${base}/trials`)]);
    const done = TERMINAL.includes(job.status);
    facts($("#job-summary"), [["Status", status(job.status)], ["Task", job.task],
      ["Waiting", job.waiting], ["Error", job.error], ["Started", when(job.datetime_started)],
      ["Stopped", when(job.datetime_stopped)], ["Budget", JSON.stringify(job.budget)]]);
    const finished = trials.filter((t) => TERMINAL.includes(t.status)).length;
    const planned = job.budget?.MODEL_TRIAL_COUNT > 0 ? job.budget.MODEL_TRIAL_COUNT * Math.max(1, new Set(trials.map((t) => t.model_name)).size) : 0;
    const progress = $("#budget-progress");
    progress.max = planned || 1;
    progress.value = planned ? Math.min(finished, planned) : (done ? 1 : 0);
    $("#budget-text").textContent = planned ? `${finished} of ${planned} trials` : `${finished} trials`;
    stop.hidden = done;
    deploy.hidden = !trials.some((t) => t.status === "COMPLETED" && typeof t.score === "number");
    const ordered = [...trials].sort((a, b) => a.no - b.no);
    fill($("#trials tbody"), [...ordered].reverse().map((t) => el("tr", { "data-trial": t.id },
      el("td", {}, el("a", { href: `/ui/trials/${t.id}`, text: t.no })), el("td", { text: t.model_name }),
      el("td", { class: "knobs", text: knobsText(t.proposal) }), el("td", { text: score(t.score) }),
      el("td", { text: seconds(t.datetime_started, t.datetime_stopped) }), el("td", {}, status(t.status)))),
    done ? "This job ran no trial." : "No trial yet: they appear here as they start.");
    const scored = ordered.filter((t) => typeof t.score === "number");
    let best = -Infinity;
    const bestPoints = scored.map((t) => { best = Math.max(best, t.score); return [t.no, best]; });
    $("#chart-best").replaceChildren(lineChart([{ name: "best score", points: bestPoints }], { xLabel: "trial", yLabel: "score", stepped: true }));
    const byModel = new Map();
    for (const t of scored) byModel.set(t.model_name, [...(byModel.get(t.model_name) ?? []), [t.no, t.score]]);
    $("#chart-scores").replaceChildren(lineChart([...byModel].map(([name, points]) => ({ name, points })), { xLabel: "trial", yLabel: "score" }));
    return done && trials.every((t) => TERMINAL.includes(t.status));
  });
};

pages.trial = async () => poll(async () => {
  const [trial, logs] = await Promise.all([api("GET", `/trials/${enc(page.trialId)}`), api("GET", `/trials/${enc(page.trialId)}/logs`)]);
  $("#trial-title").textContent = `${trial.no} · ${trial.model_name}`;
  facts($("#trial-summary"), [["Status", status(trial.status)], ["Score", score(trial.score)],
    ["Duration", seconds(trial.datetime_started, trial.datetime_stopped)], ["Started", when(trial.datetime_started)],
    ["Parameters saved", trial.is_params_saved ? "yes" : "no"], ["Id", el("code", { text: trial.id })]]);
  const knobs = trial.proposal?.knobs ?? {};
  fill($("#trial-knobs tbody"), Object.entries(knobs).map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: JSON.stringify(v) }))), "No knobs.");
  const plots = $("#plots");
  if (logs.plots.length) {
    plots.replaceChildren(...logs.plots.map((plot) => {
      const xAxis = plot.x_axis;
      const start = logs.metrics.length ? Date.parse(logs.metrics[0].time) : 0;
      const series = (plot.metrics ?? []).map((name) => ({
        name,
        points: logs.metrics.filter((m) => typeof m[name] === "number")
          .map((m, i) => [xAxis ? Number(m[xAxis]) : (Date.parse(m.time) - start) / 1000 || i, m[name]]),
      }));
      return el("figure", { class: "plot-figure" }, el("figcaption", { text: plot.title }),
        el("div", { class: "chart" }, lineChart(series, { xLabel: xAxis ?? "seconds", yLabel: (plot.metrics ?? []).join(", ") })));
    }));
  }
  const columns = [...new Set(logs.metrics.flatMap((m) => Object.keys(m)))].filter((c) => c !== "time");
  $("#metrics thead tr").replaceChildren(el("th", { text: "time" }), ...columns.map((c) => el("th", { text: c })));
  fill($("#metrics tbody"), logs.metrics.map((m) => el("tr", {}, el("td", { text: when(m.time) }),
    ...columns.map((c) => el("td", { text: m[c] ?? "" })))), "No metric logged.");
  $("#messages").textContent = logs.messages.map((m) => `${when(m.time)}  ${typeof m.message === "string" ? m.message : JSON.stringify(m.message)}`).join("\n") || "No message logged.";
  return TERMINAL.includes(trial.status);
});

// The "try it" box: a query sent to a predictor, straight from the browser.
function tryIt(endpointOf) {
  onSubmit($("#try-it"), async (form) => {
    const output = $("#prediction");
    const endpoint = endpointOf(form);
    if (!endpoint) throw new Error("no running predictor to send the query to");
    const query = parseJson(form.get("query"), "The query");
    output.textContent = "…";
    let response;
    try {
      response = await fetch(endpoint, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query }), signal: AbortSignal.timeout(REQUEST_DEADLINE_MS), credentials: "omit",
      });
    } catch (error) {
      output.textContent = "";
      throw new Error(`the predictor at ${endpoint} could not be reached from this browser (${error.message})`);
    }
    if (!response.ok) {
      output.textContent = "";
      throw await errorOf(response);
    }
    const body = await response.json();
    output.textContent = JSON.stringify(body.prediction ?? body, null, 2);
  });
}

// Predictors are reached over plain HTTP (nginx), as the API's `predictor_host` says.
function predictUrl(host) {
  return host ? `http://${host.replace(/\/+$/, "")}/predict` : "";
}

pages.inference_jobs = async () => {
  const select = $("#try-it select[name=endpoint]");
  const refresh = async () => {
    const listed = await api("GET", `/inference_jobs?user_id=${enc(page.userId)}`);
    // The list leaves out where each job is served; a running job's own view says.
    const jobs = await Promise.all(listed.map((j) => (j.status === "RUNNING" && !j.predictor_host
      ? api("GET", `/inference_jobs/${enc(j.app)}/${j.app_version}`).then((full) => ({ ...j, ...full }))
      : j)));
    fill($("#inference-jobs tbody"), jobs.map((j) => el("tr", {},
      el("td", { text: j.app }), el("td", { text: j.app_version }), el("td", {}, status(j.status), j.waiting ? el("small", { text: ` ${j.waiting}` }) : null),
      el("td", {}, j.predictor_host ? el("code", { text: j.predictor_host }) : ""), el("td", { text: when(j.datetime_started) }),
      el("td", {}, TERMINAL.includes(j.status) ? "" : el("button", {
        type: "button", text: "Stop",
        onclick: () => guarded(async () => { await api("POST", `/inference_jobs/${enc(j.app)}/${j.app_version}/stop`); poller.wake(); }),
      })))), "No inference job: serve a train job's best trials from its page.");
    const running = jobs.filter((j) => j.status === "RUNNING" && j.predictor_host);
    const chosen = select.value;
    select.replaceChildren(...running.map((j) => el("option", { value: predictUrl(j.predictor_host), text: `${j.app} v${j.app_version}` })));
    if (chosen) select.value = chosen;
    // A running job may still stop or fail: keep watching while any job is not over.
    return jobs.every((j) => TERMINAL.includes(j.status));
  };
  tryIt((form) => form.get("endpoint"));
  const poller = poll(refresh);
};

function routesText(routes) {
  return (routes ?? []).map((r) => `v${r.app_version}${r.shadow ? " (shadow)" : ` ${r.weight}%`}`).join(", ");
}

pages.deployments = async () => {
  const refresh = async () => {
    const deployments = await api("GET", "/deployments");
    fill($("#deployments tbody"), deployments.map((d) => el("tr", {},
      el("td", {}, el("a", { href: `/ui/deployments/${enc(d.name)}`, text: d.name })), el("td", { text: d.app }),
      el("td", {}, status(d.status)), el("td", { text: routesText(d.routes) }), el("td", {}, el("code", { text: d.url })))),
    "No deployment yet.");
  };
  onSubmit($("#new-deployment"), async (form) => {
    const created = await api("POST", "/deployments", { name: form.get("name"), app: form.get("app"), app_version: Number(form.get("app_version")) });
    window.location.assign(`/ui/deployments/${enc(created.name)}`);
  });
  await refresh();
};

pages.deployment = async () => {
  const path = `/deployments/${enc(page.name)}`;
  let url = "";
  const refresh = async () => {
    const d = await api("GET", path);
    url = d.url;
    facts($("#deployment-summary"), [["Status", status(d.status)], ["App", d.app], ["Service level", d.service_level],
      ["Replicas", d.replicas], ["Endpoint", el("code", { text: d.url })], ["Error", d.error],
      ["Switching to", d.pending ? routesText(d.pending) : ""], ["Previous", d.previous ? routesText(d.previous) : ""],
      ["Updated", when(d.datetime_updated)]]);
    fill($("#routes tbody"), d.routes.map((r) => el("tr", {},
      el("td", { text: `v${r.app_version}` }), el("td", {}, el("code", { text: r.inference_job_id })),
      el("td", { text: `${r.weight}%` }), el("td", { text: r.shadow ? "yes" : "" }))), "No version served.");
    $("#rollback").disabled = !d.previous;
    return !d.pending;
  };
  onSubmit($("#switch-version"), async (form) => {
    await api("PATCH", path, { app_version: Number(form.get("app_version")) });
    poller.wake();
  });
  $("#rollback").addEventListener("click", () => guarded(async () => {
    await api("POST", `${path}/rollback`);
    poller.wake();
  }));
  tryIt(() => url);
  const poller = poll(refresh);
  traffic(path);
};

const TRAFFIC_MS = 15000;

// A deployment's request rate, latency percentiles and errors per version, from the services'
// own metrics (through the admin's Prometheus), redrawn every 15 s.
function traffic(path) {
  const note = $("#traffic-note");
  const series = (byVersion, scale = 1, suffix = "", end = 0) => Object.entries(byVersion)
    .filter(([, points]) => points.length)
    .map(([version, points]) => ({ name: `v${version}${suffix}`, points: points.map(([t, v]) => [(t - end) / 60, v * scale]) }));
  poll(async () => {
    let m;
    try {
      m = await api("GET", `${path}/metrics?minutes=60`);
    } catch (error) {
      // Said beside the charts, not as the page's error. Without a Prometheus configured (503
      // naming the setting) or for a refusal, asking again will not help.
      note.textContent = `Traffic is not available: ${error.message}`;
      return final(error) || (error instanceof ApiError && error.status === 503 && error.message.includes("set admin.prometheus_url"));
    }
    note.textContent = "";
    const axis = { xLabel: "minutes ago", xDomain: [-60, 0], dots: false };
    $("#chart-requests").replaceChildren(lineChart(series(m.requests_per_second, 1, "", m.end), { ...axis, yLabel: "req/s" }));
    $("#chart-latency").replaceChildren(lineChart([...series(m.latency_p50_seconds, 1000, " p50", m.end), ...series(m.latency_p99_seconds, 1000, " p99", m.end)], { ...axis, yLabel: "ms" }));
    $("#chart-errors").replaceChildren(lineChart(series(m.errors_per_second, 1, "", m.end), { ...axis, yLabel: "errors/s" }));
    return false;
  }, TRAFFIC_MS);
}

function confusion(metrics) {
  const m = metrics?.classification;
  if (!m) return null;
  return el("table", { class: "confusion" },
    el("caption", { text: "Confusion matrix (rows: true label, columns: predicted)" }),
    el("thead", {}, el("tr", {}, el("th", {}), ...m.labels.map((l) => el("th", { text: l })))),
    el("tbody", {}, ...m.confusion_matrix.map((row, i) => el("tr", {}, el("th", { text: m.labels[i] }), ...row.map((n) => el("td", { text: n }))))));
}

function metricsText(metrics) {
  if (!metrics) return "";
  if (metrics.classification) return `accuracy ${score(metrics.classification.accuracy)}, macro F1 ${score(metrics.classification.macro_avg.f1)}`;
  if (metrics.regression) return `MAE ${score(metrics.regression.mae)}, RMSE ${score(metrics.regression.rmse)}, R² ${score(metrics.regression.r2)}`;
  return JSON.stringify(metrics);
}

pages.evaluations = async () => {
  const evaluations = await api("GET", "/evaluations");
  fill($("#evaluations tbody"), evaluations.map((e) => el("tr", {},
    el("td", { text: e.app }), el("td", { text: e.app_version }), el("td", {}, status(e.status)),
    el("td", { text: e.rows ?? "" }), el("td", { text: e.error ?? metricsText(e.metrics) }), el("td", { text: when(e.datetime_created) }))),
  "No evaluation yet (POST /evaluations or `duma evaluate`).");
  onSubmit($("#compare"), async (form) => {
    const app = form.get("app");
    const comparison = await api("GET", `/apps/${enc(app)}/evaluations`);
    const latest = new Map();
    for (const e of evaluations.filter((x) => x.app === app && x.status === "COMPLETED")) {
      if (!latest.has(e.app_version)) latest.set(e.app_version, e);
    }
    $("#comparison").replaceChildren(...comparison.versions.map((v) => el("figure", { class: "card" },
      el("figcaption", { text: `v${v.app_version} · ${v.rows ?? "?"} rows` }),
      el("dl", { class: "facts" }, ...Object.entries(v.scores).flatMap(([k, s]) => [el("dt", { text: k }), el("dd", { text: typeof s === "number" ? score(s) : JSON.stringify(s) })])),
      confusion(evaluations.find((e) => e.id === v.evaluation_id)?.metrics ?? latest.get(v.app_version)?.metrics))));
    if (!comparison.versions.length) $("#comparison").replaceChildren(el("p", { class: "hint", text: `No completed evaluation of ${app}.` }));
  });
};

pages.users = async () => {
  const refresh = async () => {
    const users = await api("GET", "/users");
    fill($("#users tbody"), users.map((u) => el("tr", {},
      el("td", { text: u.email }), el("td", { text: u.user_type }), el("td", { text: u.banned_date ? when(u.banned_date) : "" }),
      el("td", {}, u.banned_date || u.id === page.userId ? "" : el("button", {
        type: "button", text: "Ban",
        onclick: () => guarded(async () => {
          if (!window.confirm(`Ban ${u.email}? Their tokens stop working at once.`)) return;
          await api("DELETE", "/users", { email: u.email });
          await refresh();
        }),
      })))), "No user.");
  };
  onSubmit($("#new-user"), async (form) => {
    await api("POST", "/users", { email: form.get("email"), password: form.get("password"), user_type: form.get("user_type") });
    $("#new-user").reset();
    await refresh();
  });
  await refresh();
};

if (page.page && pages[page.page]) guarded(pages[page.page]);
