"""Checks deploy/swarm against the compose file the smoke test runs live: the Redis users that
make-secrets writes have the compose file's rules, every secret a service mounts is declared and
written by make-secrets, and every `DUMA_*` setting (read directly or through `_FILE`) is one the
compose file uses.

    swarm_files.py --compose deploy/docker-compose.yml --stack deploy/swarm/duma-stack.yml \
        --secrets DIR   (make-secrets' output for some environment file)
"""

import argparse
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(__file__))
from kubernetes_rendered import compose_facts  # noqa: E402


def compose_redis_users(compose):
    """{user: rules} from the compose file's `--user NAME on >PASSWORD rules…` arguments."""
    args = [str(a) for a in compose["services"]["redis"]["command"]]
    users, current = {}, None
    for arg in args:
        if arg.startswith("--"):
            current = None
        if current is not None and not arg.startswith(">") and arg != "on":
            users[current].append(arg)
        if args.index(arg) > 0 and arg != "--user" and args[args.index(arg) - 1] == "--user":
            current = arg
            users[current] = []
    return {user: " ".join(rules) for user, rules in users.items()}


def acl_file_users(path):
    users = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if words[:1] == ["user"]:
                rules = [w for w in words[2:] if w not in ("on", "nopass") and not w.startswith(">")]
                users[words[1]] = " ".join(rules)
    return users


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compose", required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--secrets", required=True)
    args = parser.parse_args()
    problems = []
    with open(args.compose) as f:
        compose = yaml.safe_load(f)
    with open(args.stack) as f:
        stack = yaml.safe_load(f)

    expected = compose_redis_users(compose)
    written = acl_file_users(os.path.join(args.secrets, "redis_acl"))
    for user, rules in expected.items():
        if written.get(user) != rules:
            problems.append(f"Redis user {user}: make-secrets writes {written.get(user)!r}, compose has {rules!r}")

    declared = set(stack.get("secrets", {}))
    produced = set(os.listdir(args.secrets))
    if declared != produced:
        problems.append(f"declared secrets {sorted(declared ^ produced)} are not all written by make-secrets")
    compose_settings, _ = compose_facts(args.compose)
    for name, service in stack["services"].items():
        for secret in service.get("secrets", []):
            source = secret["source"] if isinstance(secret, dict) else secret
            if source not in declared:
                problems.append(f"{name} mounts the undeclared secret {source}")
        environment = service.get("environment", {})
        for variable, value in environment.items():
            if not variable.startswith("DUMA_"):
                continue
            setting = variable.removesuffix("_FILE")
            if setting not in compose_settings:
                problems.append(f"{name}: {variable} is not a setting the compose file uses")
            if variable.endswith("_FILE"):
                mounted = {s["target"] if isinstance(s, dict) and "target" in s else
                           (s["source"] if isinstance(s, dict) else s)
                           for s in service.get("secrets", [])}
                if os.path.basename(value) not in mounted:
                    problems.append(f"{name}: {variable} names {value}, which is not mounted")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"    {len(expected)} Redis users, {len(declared)} secrets and the settings of "
          f"{len(stack['services'])} services agree with the compose file")


if __name__ == "__main__":
    main()
