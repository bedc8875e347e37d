"""Abuse under load: a `duma up` stack serves an app with a prediction key at half of its measured
saturation for five minutes, with hostile requests mixed in (made-up job paths, oversized bodies,
wrong keys, malformed JSON). Reports, from the same run: the saturation it measured, the rate it
held, every well-formed request that did not get a 200 (must be none), what the hostile ones got,
and the resident memory of every process of the stack at the start, every 30 s and at the end.

    scripts/bench-abuse [--seconds 300]

Needs wrk (scripts/setup installs it) and the release binaries (the script builds them).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "smoke"))
from scenario import ServedApps, wait_for  # noqa: E402

PORTS = {"admin": 14000, "http": 14080, "prometheus": 14090, "predictor": 14100, "worker": 14201}

# One connection per wrk thread, so a thread's last request is the one a response answers.
LUA = r"""
local kinds = {"good", "good", "good", "good", "good", "good", "good", "good", "path", "key",
               "good", "good", "good", "good", "good", "good", "good", "good", "json", "good",
               "good", "good", "good", "good", "good", "good", "good", "good", "path", "good",
               "good", "good", "good", "good", "good", "good", "good", "good", "key", "good",
               "good", "good", "good", "good", "good", "good", "good", "good", "good", "big"}
local good_body = '{"query": {"x1": 2.1, "x2": 1.9}}'
local big_body = '{"query": "' .. string.rep("a", 6 * 1024 * 1024) .. '"}'
local counter, last = 0, "good"
tally = {}  -- global: done() reads it from each thread
local pause = 0

function init(args)
  pause = tonumber(args[1]) or 0
  counter = math.random(0, #kinds - 1)
end

function delay()
  return pause
end

function request()
  counter = counter + 1
  last = kinds[counter % #kinds + 1]
  -- A 6 MiB body is one request in 500 (every tenth turn of the list): uploading them at the
  -- rate of the others would take the machine's whole CPU by itself.
  if last == "big" and math.floor(counter / #kinds) % 10 ~= 0 then
    last = "good"
  end
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. KEY}
  if last == "good" then
    return wrk.format("POST", PREDICT, headers, good_body)
  elseif last == "path" then
    return wrk.format("POST", "/inference_jobs/" .. math.random(1, 1e9) .. "-" .. counter .. "/predict",
                      headers, good_body)
  elseif last == "key" then
    headers["Authorization"] = "Bearer wrong-" .. counter
    return wrk.format("POST", PREDICT, headers, good_body)
  elseif last == "json" then
    return wrk.format("POST", PREDICT, headers, '{"query": [1, 2')
  else
    return wrk.format("POST", PREDICT, headers, big_body)
  end
end

function response(status, headers, body)
  local name = last .. " " .. status
  tally[name] = (tally[name] or 0) + 1
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for name, count in pairs(thread:get("tally")) do
      total[name] = (total[name] or 0) + count
    end
  end
  for name, count in pairs(total) do
    io.write(string.format("TALLY %s %d\n", name, count))
  end
  io.write(string.format("LATENCY p50 %.2f p99 %.2f\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
"""

GOOD_ONLY = r"""
wrk.method = "POST"
wrk.body = '{"query": {"x1": 2.1, "x2": 1.9}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. KEY
wrk.path = PREDICT
"""


def stack_processes():
    """pid → name of the stack's processes: the Duma services, PostgreSQL's postmaster, Redis,
    nginx's master and workers (by `comm`: Redis rewrites its command line)."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if name == "postgres" and b"-D" not in argv:
            continue  # the backends come and go; the postmaster is the server
        if name.startswith("duma-"):
            found[int(pid)] = os.path.basename(argv[0].decode(errors="replace"))  # comm is cut at 15
        elif name in ("redis-server", "postgres", "nginx"):
            found[int(pid)] = name
    return found


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def environ_port(pid):
    """The service's port, to tell replicas apart."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if re.match(rb"DUMA_\w+__PORT=", item):
                    return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return ""


def memory(processes):
    return {pid: rss_mib(pid) for pid in processes}


def wrk(script, url, threads, connections, seconds, *args):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                   "-s", f.name, url]
        if args:
            command += ["--", *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise SystemExit(f"bench: wrk failed: {done.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    return rate, done.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--seconds", type=int, default=300)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="duma-abuse-")
    log = open(os.path.join(data, "up.log"), "w")
    up = subprocess.Popen(
        [os.path.join(args.bin_dir, "duma"), "up", "--data-dir", data,
         "--admin-port", str(PORTS["admin"]), "--http-port", str(PORTS["http"]),
         "--prometheus-port", str(PORTS["prometheus"]), "--predictor-port", str(PORTS["predictor"]),
         "--worker-port", str(PORTS["worker"])],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def started():
            if up.poll() is not None:
                raise SystemExit("bench: duma up exited:\n" + open(os.path.join(data, "up.log")).read())
            return "Duma is up" in open(os.path.join(data, "up.log")).read()

        wait_for("duma up", started, deadline=180)
        run(args, data)
    finally:
        up.terminate()
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        subprocess.run(["rm", "-rf", data])


def run(args, data):
    superadmin_password = open(os.path.join(data, "secrets", "superadmin-password")).read().strip()
    apps = ServedApps(f"http://localhost:{PORTS['admin']}", superadmin_password, data, "abuse")
    app = f"abuse-{uuid.uuid4().hex[:8]}"
    job = apps.serve(app)
    key = apps.add_key(app)
    path = "/" + job["predictor_host"].split("/", 1)[1] + "/predict"
    base = f"http://localhost:{PORTS['http']}"
    header = f'KEY = "{key}"\nPREDICT = "{path}"\n'
    print(f"bench: abuse under load, {args.seconds} s, against {base}{path} (an app with a prediction key)",
          flush=True)

    saturation, _ = wrk(header + GOOD_ONLY, base, 2, 32, 10)
    processes = stack_processes()
    names = {pid: f"{name}{':' + environ_port(pid) if environ_port(pid) else ''}" for pid, name in processes.items()}
    start = memory(processes)
    # One-connection threads, each pausing after a response so that together they send half the
    # saturation rate: the pause is set from a short calibration run (each request's own latency
    # adds to it), and the rate held is reported.
    threads = 48
    target = saturation / 2
    pause_ms = 1000 * threads / target
    for _ in range(3):
        calibrated, _ = wrk(header + LUA, base, threads, threads, 5, round(pause_ms))
        latency_ms = max(0.0, 1000 * threads / calibrated - round(pause_ms))
        pause_ms = max(0.0, 1000 * threads / target - latency_ms)
    pause_ms = round(pause_ms)
    samples = [start]
    began = time.monotonic()
    result = {}

    def load():
        try:
            result["rate"], result["out"] = wrk(header + LUA, base, threads, threads, args.seconds, pause_ms)
        except BaseException as error:  # reported by the main thread
            result["error"] = error

    worker = threading.Thread(target=load)
    worker.start()
    while worker.is_alive():
        worker.join(timeout=30)
        if worker.is_alive():
            samples.append(memory(processes))
    end = memory(processes)
    took = time.monotonic() - began
    if "error" in result:
        raise SystemExit(f"bench: the load failed: {result['error']}")

    tally = {}
    for line in result["out"].splitlines():
        if line.startswith("TALLY "):
            _, name, status, count = line.split()
            tally[(name, status)] = int(count)
    latency = re.search(r"LATENCY p50 ([\d.]+) p99 ([\d.]+)", result["out"])
    good_ok = tally.get(("good", "200"), 0)
    good_bad = {status: count for (name, status), count in tally.items() if name == "good" and status != "200"}
    print(f"  saturation (well-formed only, 32 connections)   {saturation:9.0f} requests/s", flush=True)
    print(f"  held for {took:.0f} s with {threads} connections          {result['rate']:9.0f} requests/s "
          f"({100 * result['rate'] / saturation:.0f}% of saturation; p50 {latency.group(1)} ms, "
          f"p99 {latency.group(2)} ms)")
    print(f"  well-formed: {good_ok} answered 200, {sum(good_bad.values())} not {good_bad or ''}")
    for kind, label in [("path", "made-up job paths"), ("key", "wrong keys"), ("json", "malformed JSON"),
                        ("big", "6 MiB bodies")]:
        got = {status: count for (name, status), count in tally.items() if name == kind}
        print(f"  hostile, {label:<18} {got}")
    print("  resident memory, MiB (start, every 30 s, end):")
    growth = []
    for pid in sorted(processes, key=lambda p: names[p]):
        series = [s.get(pid) for s in samples] + [end.get(pid)]
        if None in series:
            print(f"    {names[pid]:<26} exited during the run")
            growth.append(names[pid])
            continue
        print(f"    {names[pid]:<26} {series[0]:7.1f} → {series[-1]:7.1f}   "
              + " ".join(f"{v:.0f}" for v in series))
    if good_bad:
        raise SystemExit("bench: well-formed requests failed under abuse")
    if growth:
        raise SystemExit(f"bench: processes died: {growth}")


if __name__ == "__main__":
    main()
