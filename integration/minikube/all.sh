#!/usr/bin/env bash
# Everything, in order: start minikube, build the step image, register the stack, run and
# verify the demo. The cluster and server stay up afterwards; down.sh removes them.
#
#   integration/minikube/all.sh [MEMORY]
set -euo pipefail
here=$(dirname "$0")
"$here/start.sh" "${1:-8g}"
"$here/build-image.sh"
"$here/register-stack.sh"
"$here/run-demo.sh"
