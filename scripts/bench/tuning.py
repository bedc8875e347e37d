"""Tuning through the platform: Branin and Hartmann6 as ordinary Python templates, tuned by train
jobs on a running Duma, next to Optuna's samplers on the same functions in this process.

Run by `scripts/bench-tuning`, which starts `duma up` with 1 and then 2 train workers; this script
drives one such stack per call (--label says which) and appends its regrets to --results. With
--report it prints the table of every result gathered, Optuna's included. Not a test."""

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
sys.path.insert(0, os.path.dirname(__file__))

from duma.client import Client  # noqa: E402
import tuning_templates  # noqa: E402

CHECKPOINTS = [10, 25, 50, 100]
PROBLEMS = {
    "Branin": {"min": 0.397887, "function": lambda k: -tuning_templates.Branin(**k).evaluate(None)},
    "Hartmann6": {"min": -3.32237, "function": lambda k: tuning_templates.hartmann6([k[f"x{i}"] for i in range(1, 7)])},
}
TASK = "TABULAR_REGRESSION"
JOB_DEADLINE_S = 1800


def regrets(values, global_min, trials):
    """Simple regret after each checkpoint: best value so far minus the global minimum."""
    out, best = {}, math.inf
    for n, value in enumerate(values[:trials], start=1):
        best = min(best, value)
        if n in CHECKPOINTS:
            out[n] = best - global_min
    return out


def platform(args):
    client = Client(admin_host=args.admin_host, admin_port=args.admin_port)
    client.login("superadmin@rafiki", args.superadmin_password)
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "dummy.csv")
        with open(data, "w") as f:
            f.write("x,y\n" + "".join(f"{i},{i}\n" for i in range(10)))
        dataset = client.create_dataset("tuning", TASK, dataset_path=data)["id"]
        source = os.path.join(os.path.dirname(__file__), "tuning_templates.py")
        models = {
            name: client.create_model(f"{name}-{int(time.time())}", TASK, source, name)["id"]
            for name in PROBLEMS
        }
    results = []
    for run in range(args.runs):
        for name, problem in PROBLEMS.items():
            app = f"{name.lower()}-{args.label.split()[0]}w-{run}-{int(time.time())}"
            started = time.time()
            client.create_train_job(
                app, TASK, dataset, dataset,
                budget={"MODEL_TRIAL_COUNT": args.trials, "TIME_HOURS": 1},
                models=[models[name]],
            )
            deadline = time.time() + JOB_DEADLINE_S
            while client.get_train_job(app)["status"] not in ("STOPPED", "ERRORED"):
                if time.time() > deadline:
                    sys.exit(f"{app} did not end within {JOB_DEADLINE_S} s")
                time.sleep(0.5)
            trials = sorted(client.get_trials_of_train_job(app, limit=10_000), key=lambda t: t["no"])
            values = [-t["score"] if t["status"] == "COMPLETED" else math.inf for t in trials]
            seconds = time.time() - started
            results.append({"who": f"Duma, {args.label}", "problem": name, "regrets": regrets(values, problem["min"], args.trials), "seconds": seconds})
            print(f"{app}: {len(trials)} trials in {seconds:.1f} s, regret {results[-1]['regrets']}", flush=True)
    with open(args.results, "a") as f:
        for result in results:
            f.write(json.dumps(result) + "\n")


def optuna_runs(args):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"Optuna TPE": lambda seed: optuna.samplers.TPESampler(seed=seed)}
    try:
        import torch  # noqa: F401  (GPSampler needs it)

        samplers["Optuna GPSampler"] = lambda seed: optuna.samplers.GPSampler(seed=seed)
    except ImportError:
        print("Optuna GPSampler skipped: it needs torch, which is not installed", flush=True)
    spaces = {
        "Branin": lambda trial: {"x1": trial.suggest_float("x1", -5, 10), "x2": trial.suggest_float("x2", 0, 15)},
        "Hartmann6": lambda trial: {f"x{i}": trial.suggest_float(f"x{i}", 0, 1) for i in range(1, 7)},
    }
    results = []
    for who, sampler in samplers.items():
        for name, problem in PROBLEMS.items():
            for seed in range(args.runs):
                study = optuna.create_study(sampler=sampler(seed))
                study.optimize(lambda trial: problem["function"](spaces[name](trial)), n_trials=args.trials)
                values = [t.value for t in study.trials]
                results.append({"who": who, "problem": name, "regrets": regrets(values, problem["min"], args.trials)})
    with open(args.results, "a") as f:
        for result in results:
            f.write(json.dumps(result) + "\n")


def report(args):
    rows = {}
    with open(args.results) as f:
        for line in f:
            result = json.loads(line)
            rows.setdefault((result["who"], result["problem"]), []).append(result)
    print(f"\nMedian simple regret at {'/'.join(map(str, CHECKPOINTS))} trials (runs per row in brackets)")
    for problem in PROBLEMS:
        print(f"\n{problem}")
        for (who, name), results in sorted(rows.items()):
            if name != problem:
                continue
            cells = []
            for n in CHECKPOINTS:
                values = [r["regrets"][str(n)] if str(n) in r["regrets"] else r["regrets"].get(n) for r in results]
                values = [v for v in values if v is not None]
                cells.append(f"{statistics.median(values):.2e}" if values else "-")
            seconds = [r["seconds"] for r in results if "seconds" in r]
            wall = f"  {statistics.median(seconds):.0f} s/job" if seconds else ""
            print(f"  {who:<28} [{len(results):>2}]  " + "  ".join(f"{c:>9}" for c in cells) + wall)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True, help="JSON lines file results are appended to")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--label", help="name of the platform configuration, e.g. '2 workers'")
    parser.add_argument("--admin-host", default="localhost")
    parser.add_argument("--admin-port", type=int, default=3000)
    parser.add_argument("--superadmin-password")
    parser.add_argument("--optuna", action="store_true", help="run Optuna's samplers instead")
    parser.add_argument("--report", action="store_true", help="print the table of --results")
    args = parser.parse_args()
    if args.report:
        report(args)
    elif args.optuna:
        optuna_runs(args)
    else:
        platform(args)


if __name__ == "__main__":
    main()
