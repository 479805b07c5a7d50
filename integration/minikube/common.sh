# shellcheck shell=bash disable=SC2034 # variables used by the scripts that source this
# Settings shared by the minikube scripts (sourced, not run). Override any of them from the
# environment, e.g. `MINIKUBE_PROFILE=oom NAMESPACE=ml integration/minikube/start.sh 12g`.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MINIKUBE_DIR="$REPO_ROOT/integration/minikube"

# minikube names the kubectl context after its profile; the stack's orchestrator uses it.
MINIKUBE_PROFILE=${MINIKUBE_PROFILE:-minikube}
KUBE_CONTEXT=${KUBE_CONTEXT:-$MINIKUBE_PROFILE}
MINIKUBE_CPUS=${MINIKUBE_CPUS:-2}
NAMESPACE=${NAMESPACE:-zenml}
SERVICE_ACCOUNT=zenml-oom-orchestrator # must match rbac.yaml
STEP_IMAGE=${STEP_IMAGE:-zenml-oom-step:dev} # not :latest, so pods never try to pull it
STACK_NAME=${STACK_NAME:-oom_minikube}

# Everything the scripts create on this machine lives here. minikube mounts it into its node
# at the same path, so the local artifact store is reachable from pods (ZenML's `local=True`
# orchestrator mounts the local stores directory into every pod as a hostPath).
WORK_DIR=${WORK_DIR:-$HOME/.zenml-oom-minikube}
export ZENML_CONFIG_PATH=${ZENML_CONFIG_PATH:-$WORK_DIR/zenml-config}
export ZENML_ANALYTICS_OPT_IN=false ZENML_AUTO_OPEN_DASHBOARD=false
ZENML_PORT=${ZENML_PORT:-8237}

PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
ZENML=${ZENML:-$REPO_ROOT/.venv/bin/zenml}

kctl() {
  kubectl --context "$KUBE_CONTEXT" "$@"
}

log() {
  printf '==> %s\n' "$*" >&2
}
