#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the local ZenML server and delete the minikube profile. Keeps WORK_DIR (the ZenML
# config, artifacts and runs) unless --purge is given.
#
#   integration/minikube/down.sh [--purge]
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

if [ -d "$ZENML_CONFIG_PATH" ]; then
  log "Stopping the local ZenML server"
  "$ZENML" logout --local || true
fi
log "Deleting minikube profile '$MINIKUBE_PROFILE'"
minikube delete --profile "$MINIKUBE_PROFILE"
if [ "${1:-}" = "--purge" ]; then
  log "Removing $WORK_DIR"
  rm -rf "$WORK_DIR"
fi
