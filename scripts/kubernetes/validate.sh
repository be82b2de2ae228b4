#!/usr/bin/env bash
# Validates deploy/kubernetes/ offline: every manifest against the Kubernetes $K8S_VERSION schemas
# in strict mode (unknown fields refused), with the PyPI package kubernetes-validate (it ships the
# schemas: no cluster, no network); the manifests against one another, the Dockerfile and config/
# (check.py); and the generated ConfigMap against config/ (configmap.py --check). With kubectl at
# hand, the kustomize build is validated too. A warning (an unknown kind, say) fails like an error.
#
# The first run makes a virtualenv with kubernetes-validate (~/.cache/popliteal/k8s-venv, or
# POPLITEAL_K8S_VENV); later runs reuse it. Idempotent. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."

KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.30.0
VENV="${POPLITEAL_K8S_VENV:-$HOME/.cache/popliteal/k8s-venv}"
MANIFESTS=deploy/kubernetes

say() { echo "kubernetes: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

ensure_venv() {
    if [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
        if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
            say "installing Python's venv from Debian's packages"
            export DEBIAN_FRONTEND=noninteractive
            as_root apt-get update -q
            as_root apt-get install -y -q python3 python3-venv
        fi
        say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    fi
}

# kubernetes-validate exits 0 on a warning (a kind or apiVersion it has no schema for): read its
# lines too. Prints what it found; returns 1 on any ERROR, WARN or FATAL, or a non-zero exit.
schema_check() {
    local output rc=0
    output=$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$@" 2>&1) || rc=$?
    printf '%s\n' "$output" | sed 's/^/kubernetes: /' >&2
    if [ "$rc" != 0 ] || printf '%s\n' "$output" | grep -Eq '^(ERROR|WARN|FATAL)'; then
        return 1
    fi
}

ensure_venv
failed=0

files=()
for file in "$MANIFESTS"/*.yaml; do
    [ "$(basename "$file")" = kustomization.yaml ] || files+=("$file")
done
schema_check "${files[@]}" || failed=1

"$VENV/bin/python" scripts/kubernetes/check.py || failed=1
"$VENV/bin/python" scripts/kubernetes/configmap.py --check || failed=1

if command -v kubectl >/dev/null 2>&1; then
    built=$(mktemp)
    trap 'rm -f "$built"' EXIT
    if kubectl kustomize "$MANIFESTS" >"$built"; then
        say "the kustomize build (kubectl kustomize $MANIFESTS):"
        schema_check "$built" || failed=1
    else
        failed=1
    fi
else
    say "no kubectl here: the kustomize build is not checked (the files are)"
fi

if [ "$failed" != 0 ]; then
    say "FAILED: deploy/kubernetes/ does not validate (see above)"
    exit 1
fi
say "deploy/kubernetes/ validates against Kubernetes $K8S_VERSION (strict), and configmap.yaml matches config/"
