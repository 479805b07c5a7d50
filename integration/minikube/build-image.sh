#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build the step image (Python + this plugin) inside minikube, so no registry is needed.
#
#   integration/minikube/build-image.sh
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

# A small build context with only what `pip install` needs: minikube copies the whole context
# into its node, and the repository's .venv alone is hundreds of MB.
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/README.md" "$REPO_ROOT/zenml_oom_orchestrator" \
  "$context/"
cp "$MINIKUBE_DIR/Dockerfile" "$context/Dockerfile"
find "$context" -name __pycache__ -prune -exec rm -rf {} +

log "Building $STEP_IMAGE in minikube profile '$MINIKUBE_PROFILE'"
minikube --profile "$MINIKUBE_PROFILE" image build -t "$STEP_IMAGE" "$context"
minikube --profile "$MINIKUBE_PROFILE" image ls | grep -F "${STEP_IMAGE%%:*}"
