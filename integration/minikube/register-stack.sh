#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start a local ZenML server that minikube's pods can reach, register the oom_kubernetes
# flavor and a stack that runs on minikube, and make that stack active. Safe to run again.
#
#   integration/minikube/register-stack.sh
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

# Pods reach this machine as host.minikube.internal; a server listening on that address is
# reachable from here and from the pods, and ZenML hands its URL to the pods.
if [ -z "${ZENML_SERVER_IP:-}" ]; then
  ZENML_SERVER_IP=$(minikube --profile "$MINIKUBE_PROFILE" ssh -- grep host.minikube.internal /etc/hosts |
    tr -d '\r' | awk '{print $1}' | head -n1)
fi
[ -n "$ZENML_SERVER_IP" ] || {
  echo "could not find host.minikube.internal; set ZENML_SERVER_IP" >&2
  exit 1
}

log "Starting a local ZenML server on $ZENML_SERVER_IP:$ZENML_PORT (config in $ZENML_CONFIG_PATH)"
mkdir -p "$ZENML_CONFIG_PATH"
"$ZENML" login --local --ip-address "$ZENML_SERVER_IP" --port "$ZENML_PORT"

if "$ZENML" stack describe "$STACK_NAME" >/dev/null 2>&1; then
  log "Stack '$STACK_NAME' exists: making it active"
  "$ZENML" stack set "$STACK_NAME"
  exit 0
fi

# `zenml KIND register NAME-OR-SOURCE ARGS...`; if it fails only because NAME exists already
# (a run of this script that stopped half-way), say so and go on. Each zenml call costs
# seconds, so the existence check (`zenml KIND describe NAME`) runs only after a failure.
register_or_exists() {
  local -a kind
  read -r -a kind <<<"$1"
  local name=$2 out
  shift 2
  if out=$("$ZENML" "${kind[@]}" register "$@" 2>&1); then
    printf '%s\n' "$out"
  elif "$ZENML" "${kind[@]}" describe "$name" >/dev/null 2>&1; then
    log "$1 '$name' exists already"
  else
    printf '%s\n' "$out" >&2
    return 1
  fi
}

log "Registering the oom_kubernetes flavor and stack '$STACK_NAME'"
register_or_exists "orchestrator flavor" oom_kubernetes \
  zenml_oom_orchestrator.flavors.OOMKubernetesOrchestratorFlavor
# Inside the local stores directory, which the orchestrator mounts into pods (local=True) and
# start.sh mounted into the minikube node at the same path.
artifact_path="$ZENML_CONFIG_PATH/local_stores/$STACK_NAME"
mkdir -p "$artifact_path"
register_or_exists artifact-store "$STACK_NAME" "$STACK_NAME" --flavor=local --path="$artifact_path"
# Required by the Kubernetes stack validator; the step image is built by build-image.sh and
# used with skip_build, so nothing is pushed here.
register_or_exists container-registry "$STACK_NAME" "$STACK_NAME" --flavor=default \
  --uri=localhost:5000
register_or_exists image-builder "$STACK_NAME" "$STACK_NAME" --flavor=local
register_or_exists orchestrator "$STACK_NAME" "$STACK_NAME" --flavor=oom_kubernetes \
  --kubernetes_context="$KUBE_CONTEXT" \
  --kubernetes_namespace="$NAMESPACE" \
  --service_account_name="$SERVICE_ACCOUNT" \
  --local=True
"$ZENML" stack register "$STACK_NAME" -o "$STACK_NAME" -a "$STACK_NAME" \
  -c "$STACK_NAME" -i "$STACK_NAME" --set
