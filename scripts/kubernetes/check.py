#!/usr/bin/env python3
"""What a schema cannot see in deploy/kubernetes/: the manifests agree with one another, with the
Dockerfile and with config/. Run by scripts/kubernetes/validate.sh (needs PyPI's PyYAML, which
kubernetes-validate brings). Prints each disagreement; exit 1 if there is any.
"""

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "deploy" / "kubernetes"
# Files kept out of `kubectl apply -k` on purpose (each says why at its top).
NOT_APPLIED = {"secret.example.yaml", "networkpolicy.yaml"}

problems = []


def problem(message):
    problems.append(message)


def load(name):
    documents = [d for d in yaml.safe_load_all((HERE / name).read_text(encoding="utf-8")) if d]
    if len(documents) != 1:
        problem(f"{name}: one resource per file expected, found {len(documents)}")
    return documents[0] if documents else {}


def main():
    kustomization = load("kustomization.yaml")
    listed = kustomization.get("resources", [])
    manifests = sorted(p.name for p in HERE.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in listed:
        if name not in manifests:
            problem(f"kustomization.yaml lists {name}, which is not in deploy/kubernetes/")
    for name in manifests:
        if name not in listed and name not in NOT_APPLIED:
            problem(f"{name} is neither in kustomization.yaml nor one of the files kept out of it")
    for name in NOT_APPLIED & set(listed):
        problem(f"kustomization.yaml lists {name}, which must not be applied as it is")

    resources = {name: load(name) for name in manifests}
    by_kind = {}
    for name, resource in resources.items():
        by_kind.setdefault(resource.get("kind"), []).append(resource)
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"]:
        if len(by_kind.get(kind, [])) != 1:
            problem(f"exactly one {kind} expected, found {len(by_kind.get(kind, []))}")
    if problems:
        return
    deployment = by_kind["Deployment"][0]
    service = by_kind["Service"][0]
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    pdb = by_kind["PodDisruptionBudget"][0]
    configmap = by_kind["ConfigMap"][0]
    secret = by_kind["Secret"][0]

    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})

    def selects_pods(selector, what):
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problem(f"{what} {selector} does not select the Deployment's pods {pod_labels}")

    selects_pods(deployment["spec"]["selector"].get("matchLabels"), "the Deployment's selector")
    selects_pods(service["spec"].get("selector"), "the Service's selector")
    selects_pods(pdb["spec"]["selector"].get("matchLabels"), "the PodDisruptionBudget's selector")
    for netpol in by_kind.get("NetworkPolicy", []):
        selects_pods(netpol["spec"]["podSelector"].get("matchLabels"), "the NetworkPolicy's podSelector")

    target = hpa["spec"]["scaleTargetRef"]
    if (target.get("kind"), target.get("name")) != ("Deployment", deployment["metadata"]["name"]):
        problem(f"the HPA scales {target}, not the Deployment {deployment['metadata']['name']}")
    if "replicas" in deployment["spec"]:
        problem("the Deployment sets replicas: every apply would undo the HPA's count")

    spec = pod["spec"]
    containers = spec["containers"]
    if len(containers) != 1:
        problem("one container expected")
        return
    container = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("http") != 8080:
        problem("the container must expose 8080 named http (server.port)")
    for svc_port in service["spec"]["ports"]:
        if svc_port.get("targetPort") not in ports and svc_port.get("targetPort") not in ports.values():
            problem(f"the Service's targetPort {svc_port.get('targetPort')} is no container port")
    for probe, path in [("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")]:
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or (get.get("port") not in ports and get.get("port") not in ports.values()):
            problem(f"{probe} must be GET {path} on the http port (is {get})")

    env = {e["name"]: e for e in container.get("env", [])}
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in mounts:
        if mount not in volumes:
            problem(f"volumeMount {mount} has no volume")
    if env.get("APP_ENVIRONMENT", {}).get("value") != "production":
        problem("APP_ENVIRONMENT must be production")
    config_dir = env.get("APP_CONFIG_DIR", {}).get("value")
    if "config" not in mounts or mounts["config"]["mountPath"] != config_dir:
        problem(f"APP_CONFIG_DIR ({config_dir}) must be where the config volume is mounted")
    config_volume = volumes.get("config", {}).get("configMap")
    if not config_volume:
        problem("the config volume must be a ConfigMap")
    replaced = any(
        r.get("source", {}).get("kind") == "ConfigMap"
        and "spec.template.spec.volumes.[name=config].configMap.name"
        in [f for t in r.get("targets", []) for f in t.get("fieldPaths", [])]
        for r in kustomization.get("replacements", [])
    )
    if not replaced:
        problem("kustomization.yaml must copy the ConfigMap's (hashed) name into the config volume")
    for name in ["default.toml", "production.toml"]:
        if name not in configmap.get("data", {}):
            problem(f"the ConfigMap lacks {name}")
    for path in ["/var/lib/popliteal", "/tmp"]:
        if path not in [m["mountPath"] for m in mounts.values()]:
            problem(f"nothing writable is mounted at {path} (the root filesystem is read-only)")

    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for name in ["POPLITEAL__AUDIT__PATIENT_HASH_KEY", "POPLITEAL__DATABASE__URL"]:
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            problem(f"{name} must come from the Secret (secretKeyRef)")
        elif ref.get("name") != secret["metadata"]["name"] or ref.get("key") not in secret_keys:
            problem(f"{name} reads {ref}, which secret.example.yaml does not have")
    for name, e in env.items():
        if ("KEY" in name or "DATABASE__URL" in name or "PASSWORD" in name) and "value" in e:
            problem(f"{name} is a secret: take it from the Secret, not a literal")

    # The pod's user is the image's.
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    uid = re.search(r"useradd\b[^\n]*--uid (\d+)", dockerfile)
    run_as = spec.get("securityContext", {}).get("runAsUser")
    if not uid or run_as != int(uid.group(1)):
        problem(f"runAsUser {run_as} is not the Dockerfile's user ({uid.group(1) if uid else 'none'})")

    # The service's own grace (src/startup.rs) fits in the pod's.
    startup = (ROOT / "src" / "startup.rs").read_text(encoding="utf-8")
    grace = re.search(r"SHUTDOWN_GRACE: Duration = Duration::from_secs\((\d+)\)", startup)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_seconds = int(pre_stop[-1]) if pre_stop and pre_stop[-1].isdigit() else 0
    termination = spec.get("terminationGracePeriodSeconds", 30)
    if grace and termination <= pre_stop_seconds + 2 * int(grace.group(1)):
        problem(
            f"terminationGracePeriodSeconds {termination} leaves no room for preStop ({pre_stop_seconds} s) "
            f"and the service's shutdown (audit queue and pool, {grace.group(1)} s each)"
        )


if __name__ == "__main__":
    main()
    for message in problems:
        print(f"check: {message}", file=sys.stderr)
    sys.exit(1 if problems else 0)
