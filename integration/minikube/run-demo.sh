#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Run the demo pipeline (examples/oom_pipeline.py) on the minikube stack with the step image,
# then check in the ZenML store that every step run ended, and ended as expected.
#
#   integration/minikube/run-demo.sh
#
# The demo's sizes can be changed with OOM_DEMO_SIZES_MIB, OOM_DEMO_START and OOM_DEMO_CAP
# (see examples/oom_pipeline.py); the check below expects the default sizes.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

# The image from build-image.sh, used as it is. ZenML uploads the pipeline's code to the
# artifact store and the pods download it from there.
config="$WORK_DIR/run-config.yaml"
cat >"$config" <<YAML
settings:
  docker:
    parent_image: $STEP_IMAGE
    skip_build: true
YAML

"$ZENML" stack set "$STACK_NAME"
log "Running examples/oom_pipeline.py on stack '$STACK_NAME'"
# From examples/, so that ZenML takes that folder as the code to ship (the source root).
(cd "$REPO_ROOT/examples" && ZENML_OOM_RUN_CONFIG="$config" "$PYTHON" oom_pipeline.py)

log "Checking the run in the ZenML store"
"$PYTHON" "$MINIKUBE_DIR/verify_run.py" --pipeline oom_demo --status completed \
  --first-attempt train_0 --escalated train_1 --escalated train_2
