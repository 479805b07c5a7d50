#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start minikube with a chosen memory size, then create the namespace and the RBAC the
# orchestrator needs.
#
#   integration/minikube/start.sh [MEMORY]     MEMORY in minikube's units: 8g (default), 14g, 6144m
#
# The node's allocatable memory (a little less than MEMORY) is the default cap for OOM retries.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

MEMORY=${1:-${MINIKUBE_MEMORY:-8g}}
mkdir -p "$WORK_DIR" "$ZENML_CONFIG_PATH"

log "Starting minikube profile '$MINIKUBE_PROFILE' with $MEMORY memory and $MINIKUBE_CPUS CPUs"
# Mount WORK_DIR at the same path as the host's user, so pods running as that user (ZenML
# sets runAsUser for local stores) can read and write the artifact store.
minikube start \
  --profile "$MINIKUBE_PROFILE" \
  --memory "$MEMORY" \
  --cpus "$MINIKUBE_CPUS" \
  --mount --mount-string "$WORK_DIR:$WORK_DIR" \
  --mount-uid "$(id -u)" --mount-gid "$(id -g)"

log "Creating namespace '$NAMESPACE' and the orchestrator's service account and RBAC"
kctl create namespace "$NAMESPACE" --dry-run=client -o yaml | kctl apply -f -
# rbac.yaml for any namespace: the package prints the same manifests (its source of truth).
"$PYTHON" -m zenml_oom_orchestrator.rbac --namespace "$NAMESPACE" | kctl apply -f -

kctl get node -o custom-columns='NODE:.metadata.name,ALLOCATABLE MEMORY:.status.allocatable.memory'
