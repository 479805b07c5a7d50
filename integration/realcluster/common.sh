#!/usr/bin/env bash
# Sourced by build.sh, up.sh and down.sh: where the real tier lives and what it is made of.
# The cache survives across checkouts and CI runs (a cold build takes ~15 min on 2 cores).
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file

REALTIER_CACHE=${ZENML_OOM_REALTIER_CACHE:-/var/cache/zenml-oom/realtier}
K8S_OUT=$REALTIER_CACHE/k8s          # Kubernetes + etcd binaries, Go module and build caches
NODE_OUT=$REALTIER_CACHE/node        # containerd, runc, CNI, crictl, rootfs and images/*.tar
STATEDIR=${ZENML_OOM_REALTIER_STATE:-$REALTIER_CACHE/state}   # PKI, etcd, kubelet, containerd state
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")/lib" && pwd -P)
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)

export K8S_VERSION=${K8S_VERSION:-v1.35.4}
export ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
export CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.9}
export CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
# The image the tests name `python:3.11` (as the local cluster accepts it) is this debootstrap one;
# the step image also answers to the name the ZenML tests give it on the local cluster.
PYTHON_IMAGE=localhost/python:3.11-bookworm
STEP_IMAGE=localhost/zenml-oom:dev
export IMAGE_ALIASES="$PYTHON_IMAGE=docker.io/library/python:3.11 $STEP_IMAGE=docker.io/local/zenml-oom:dev"
# The node: 8Gi allocatable like the local cluster's (the rest of the host is systemReserved).
NODE_MEMORY_KI=${ZENML_OOM_REALTIER_NODE_KI:-8388608}
EVICTION_KI=102400                   # evictionHard memory.available 100Mi (node-up.sh)

rt_log() { echo "[realtier $(date +%H:%M:%S)] $*"; }

# sha256 of files (paths relative to $1), for the stamps that decide what is rebuilt
hash_files() {
  local dir=$1; shift
  (cd "$dir" && sha256sum "$@") | sha256sum | cut -c1-64
}

# The step image's inputs: the project files its wheel is built from (tracked or new, not ignored).
project_source_hash() {
  (cd "$PROJECT" && git ls-files -z -co --exclude-standard -- pyproject.toml README.md \
      zenml_oom_orchestrator | sort -z | while IFS= read -r -d '' f; do
      [ -f "$f" ] && sha256sum "$f"
    done) | sha256sum | cut -c1-64
}
