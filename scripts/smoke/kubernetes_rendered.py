"""Checks what `kubectl kustomize` renders from deploy/kubernetes beyond the API schemas: every
service is there with its image, probes, resources and scrape annotations; every secret it reads
is in the Secret; the data services take connections only from the pods that use them; the Redis
ACL rules and the settings are the ones the compose file (tested live) uses.

    kubernetes_rendered.py --compose deploy/docker-compose.yml production.yaml external-data.yaml

Each rendered file is named after its overlay. Exits 1 naming every problem found.
"""

import argparse
import os
import re
import sys

import yaml

DUMA_SERVICES = {
    "admin": 3000,
    "predictor": 3100,
    "advisor-worker": 3201,
    "train-worker": 3202,
    "inference-worker": 3203,
}
DATA_SERVICES = {"postgres", "redis", "s3"}
DUMA_IMAGE = "registry.example.com/duma:0.1.0"
# Which variable says a pod talks to which data service (its NetworkPolicy must let it in).
USES = {
    "postgres": "DUMA_DATABASE__URL",
    "redis": "DUMA_REDIS__URL",
    "s3": "DUMA_OBJECT_STORE__ACCESS_KEY_ID",
}

problems = []


def problem(overlay, message):
    problems.append(f"{overlay}: {message}")


def pod_specs(objects):
    """(kind/name, pod spec, pod metadata) of every workload."""
    for obj in objects:
        kind = obj["kind"]
        if kind in ("Deployment", "StatefulSet", "Job"):
            template = obj["spec"]["template"]
            yield f"{kind}/{obj['metadata']['name']}", template["spec"], template["metadata"]


def env_names(container):
    return [e["name"] for e in container.get("env", [])]


def compose_facts(path):
    with open(path) as f:
        text = f.read()
    compose = yaml.safe_load(text)
    variables = set(re.findall(r"\b(DUMA_[A-Z_]+)\s*:", text))
    # `${NAME:-default}` is its default; `${NAME:?why}` (a secret) its name.
    redis_args = [
        re.sub(r"\$\{([A-Z_]+):\?[^}]*\}", r"\1", re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(a)))
        for a in compose["services"]["redis"]["command"]
    ]
    return variables, redis_args


def check(overlay, objects, compose_variables, compose_redis_args):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    deployments = by_kind.get("Deployment", {})
    secrets = list(by_kind.get("Secret", {}).values())
    config = by_kind.get("ConfigMap", {}).get("duma-config", {}).get("data", {})
    secret_keys = {key for s in secrets for key in s.get("data", {})}
    secret_names = {s["metadata"]["name"] for s in secrets}

    for name, port in DUMA_SERVICES.items():
        if name not in deployments:
            problem(overlay, f"no Deployment {name}")
    if "migrate" not in by_kind.get("Job", {}):
        problem(overlay, "no migrate Job")
    external = overlay == "external-data"
    for name in DATA_SERVICES:
        present = name in by_kind.get("StatefulSet", {})
        if present == external:
            problem(overlay, f"StatefulSet {name} {'present' if present else 'missing'}")
        if not external and name not in by_kind.get("NetworkPolicy", {}):
            problem(overlay, f"no NetworkPolicy keeps {name} private")
    if external and config.get("POSTGRES_HOST") in ("postgres", None):
        problem(overlay, "external-data still points at the in-cluster postgres")

    for name, spec, metadata in pod_specs(objects):
        annotations = metadata.get("annotations", {})
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name} container {container['name']}"
            image = container["image"]
            resources = container.get("resources", {})
            if not resources.get("requests", {}).get("cpu") or not resources.get(
                "requests", {}
            ).get("memory"):
                problem(overlay, f"{where}: no cpu and memory requests")
            if not resources.get("limits", {}).get("memory"):
                problem(overlay, f"{where}: no memory limit")
            if image.endswith(":latest") or ":" not in image.split("/")[-1]:
                problem(overlay, f"{where}: image {image} is not pinned")
            if container.get("command", [""])[0].startswith("duma"):
                if image != DUMA_IMAGE:
                    problem(overlay, f"{where}: image {image}, expected {DUMA_IMAGE}")
                for variable in env_names(container):
                    if variable.startswith("DUMA_") and variable not in compose_variables:
                        problem(overlay, f"{where}: {variable} is not a setting compose uses")
            for ref in container.get("env", []):
                secret = ref.get("valueFrom", {}).get("secretKeyRef")
                if secret and (
                    secret["name"] not in secret_names or secret["key"] not in secret_keys
                ):
                    problem(overlay, f"{where}: reads {secret} that no Secret holds")
            for service, variable in USES.items():
                if variable in env_names(container) and not external:
                    policy = by_kind["NetworkPolicy"][service]
                    allowed = {
                        value
                        for rule in policy["spec"]["ingress"]
                        for peer in rule["from"]
                        for expression in peer["podSelector"].get("matchExpressions", [])
                        for value in expression["values"]
                    }
                    pod = metadata["labels"]["app.kubernetes.io/name"]
                    if pod not in allowed:
                        problem(overlay, f"{where}: uses {service}, which its policy refuses")
            base_name = name.split("/")[1].removesuffix("-gpu")
            if name.startswith("Deployment/") and base_name in DUMA_SERVICES:
                port = DUMA_SERVICES[base_name]
                declared = [p["containerPort"] for p in container.get("ports", [])]
                if declared != [port]:
                    problem(overlay, f"{where}: ports {declared}, expected [{port}]")
                if annotations.get("prometheus.io/port") != str(port) or annotations.get(
                    "prometheus.io/scrape"
                ) != "true":
                    problem(overlay, f"{where}: no Prometheus scrape annotations for {port}")
                for probe, path in (("readinessProbe", "/health"), ("livenessProbe", "/live")):
                    if container.get(probe, {}).get("httpGet", {}).get("path") != path:
                        problem(overlay, f"{where}: {probe} is not GET {path}")
        if name == "StatefulSet/redis":
            args = [
                re.sub(r"\$\(([A-Z_]+)\)", r"\1", a) for a in spec["containers"][0]["args"]
            ]
            if ["redis-server"] + args != compose_redis_args:
                problem(overlay, "Redis's arguments (ACL users) differ from the compose file's")

    for value in config.values():
        if re.fullmatch(r"[0-9a-f]{32,}", value):
            problem(overlay, "duma-config holds what looks like a secret")

    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
        for name, obj in by_kind.get(kind, {}).items():
            if kind == "HorizontalPodAutoscaler":
                target = obj["spec"]["scaleTargetRef"]["name"]
            else:
                target = obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            if target not in deployments:
                problem(overlay, f"{kind} {name} targets {target}, which does not exist")
    for name in ("predictor", "inference-worker"):
        if name not in by_kind.get("HorizontalPodAutoscaler", {}):
            problem(overlay, f"no HorizontalPodAutoscaler for {name}")

    routes = {}
    for ingress in by_kind.get("Ingress", {}).values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                routes[path["path"]] = path["backend"]["service"]["name"]
    if routes.get("/inference_jobs") != "predictor" or routes.get("/predict") != "predictor":
        problem(overlay, f"predictions are not routed to the predictor: {routes}")
    if routes.get("/") != "admin":
        problem(overlay, f"the admin API is not routed: {routes}")

    if not external:
        gpu = deployments.get("train-worker-gpu")
        limits = gpu and gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        if not limits or str(limits.get("nvidia.com/gpu")) != "1":
            problem(overlay, "no train-worker-gpu asking for nvidia.com/gpu")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compose", required=True)
    parser.add_argument("rendered", nargs="+")
    args = parser.parse_args()
    compose_variables, compose_redis_args = compose_facts(args.compose)
    for path in args.rendered:
        overlay = os.path.basename(path).removesuffix(".yaml")
        with open(path) as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        check(overlay, objects, compose_variables, compose_redis_args)
        print(f"    {overlay}: {len(objects)} objects checked")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
