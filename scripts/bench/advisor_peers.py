"""Optuna's GPSampler and TPESampler on the problems of Duma's advisor benchmark
(advisor-worker/benches/advisor.rs): the same functions, spaces, noise, seeds and checkpoints.

Run by `scripts/bench-advisor` in a throwaway virtualenv; writes a JSON file that the Rust
benchmark reads to print both side by side:
    {"versions": {...}, "results": {problem: {sampler: {"regret": [..], "suggestion_ms": x}}}}
Simple regret is the true function's value at the trial with the best observed value, minus the
global minimum (the same for noiseless problems as the best value found). Not a test."""

import argparse
import json
import math
import os
import random
import statistics
import time

import optuna

CHECKPOINTS = [10, 25, 50, 100]
HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]
HARTMANN_A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
HARTMANN_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def branin(trial):
    x1 = trial.suggest_float("x1", -5.0, 10.0)
    x2 = trial.suggest_float("x2", 0.0, 15.0)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(trial):
    x = [trial.suggest_float(f"x{j}", 0.0, 1.0) for j in range(1, 7)]
    return -sum(
        alpha * math.exp(-sum(a * (xj - p) ** 2 for a, xj, p in zip(row, x, centre)))
        for alpha, row, centre in zip(HARTMANN_ALPHA, HARTMANN_A, HARTMANN_P)
    )


def mixed(trial):
    lr = math.log10(trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True))
    width = trial.suggest_int("width", 1, 128)
    activation = trial.suggest_categorical("activation", ["relu", "tanh", "sigmoid", "elu", "selu"])
    shift, penalty = {"relu": (0.0, 0.0), "tanh": (0.5, 0.3), "sigmoid": (-1.0, 0.8)}.get(
        activation, (0.7, 1.5)
    )
    return (lr + 3 + shift) ** 2 + ((width - 37) / 16) ** 2 + penalty


CELLS, OPS = 8, 4


def arch_error(ops):
    error = 10.0
    for p, o in enumerate(ops):
        error -= math.sin(1.7 * p + 2.3 * o + 0.5)
        if p > 0:
            a = ops[p - 1]
            error -= 0.6 * math.cos(1.1 * (a * o) + 0.7 * (a + o))
    return error


def arch(trial):
    return arch_error([trial.suggest_categorical(f"cell{p}", list(range(OPS))) for p in range(CELLS)])


ARCH_MINIMUM = min(
    arch_error([code // OPS**p % OPS for p in range(CELLS)]) for code in range(OPS**CELLS)
)

# name (as the Rust benchmark prints it) -> (function, global minimum, noise sd)
PROBLEMS = {
    "branin": (branin, 0.397887, 0.0),
    "hartmann6": (hartmann6, -3.32237, 0.0),
    "mixed": (mixed, 0.0, 0.0),
    "arch": (arch, ARCH_MINIMUM, 0.0),
    "branin+noise": (branin, 0.397887, 0.5),
    "hartmann6+noise": (hartmann6, -3.32237, 0.05),
}


def run(problem, sampler, seed, trials):
    function, minimum, noise = PROBLEMS[problem]
    noise_rng = random.Random(1_000_003 * seed + 17)
    study = optuna.create_study(sampler=sampler)
    best_observed, best_true = math.inf, math.inf
    regrets, spent = [], 0.0
    for n in range(1, trials + 1):
        started = time.perf_counter()
        trial = study.ask()
        value = function(trial)  # the suggest_* calls are the sampler's work too
        spent += time.perf_counter() - started
        observed = value + noise * noise_rng.gauss(0.0, 1.0)
        started = time.perf_counter()
        study.tell(trial, observed)
        spent += time.perf_counter() - started
        if observed < best_observed:
            best_observed, best_true = observed, value
        if n in CHECKPOINTS:
            regrets.append(best_true - minimum)
    return regrets, spent / trials


def median(values):
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--samplers", default="GPSampler,TPE")
    parser.add_argument("--merge", action="store_true", help="keep the results already in --out")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers = {
        "GPSampler": lambda seed: optuna.samplers.GPSampler(seed=seed),
        "TPE": lambda seed: optuna.samplers.TPESampler(seed=seed),
    }
    results = {}
    if args.merge and os.path.exists(args.out):
        with open(args.out) as existing:
            results = json.load(existing)["results"]
    for problem in args.problems.split(","):
        results.setdefault(problem, {})
        for name in args.samplers.split(","):
            started = time.perf_counter()
            runs = [run(problem, samplers[name](seed), seed, args.trials) for seed in range(args.seeds)]
            regret = [median([r[0][i] for r in runs]) for i in range(len(CHECKPOINTS))]
            suggestion_ms = 1000 * statistics.mean(r[1] for r in runs)
            results[problem][name] = {"regret": regret, "suggestion_ms": suggestion_ms}
            print(
                f"{problem:<16} {name:<10} regret@{CHECKPOINTS}: "
                + " ".join(f"{r:.3e}" for r in regret)
                + f"  {suggestion_ms:.1f} ms/suggestion  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            with open(args.out, "w") as out:
                json.dump(
                    {
                        "versions": {"optuna": optuna.__version__, "torch": torch.__version__},
                        "seeds": args.seeds,
                        "trials": args.trials,
                        "results": results,
                    },
                    out,
                    indent=1,
                )


if __name__ == "__main__":
    main()
