#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# build.sh — build the real tier, or reuse what is built: Kubernetes 1.35 + etcd 3.6 (from the
# Go module proxy), containerd 2.2 + runc + CNI + crictl, the pause and python images (debootstrap,
# no Docker), and the step image localhost/zenml-oom:dev with zenml and this working tree.
# Each part is rebuilt only when its stamp (versions + the sources that make it) changed; a cold
# build takes ~15 min on 2 cores, a warm check ~1 s. Cache: $ZENML_OOM_REALTIER_CACHE
# (default /var/cache/zenml-oom/realtier). Needs root, Go >= 1.25, debootstrap (apt).
# Times of the last build: CACHE/build-times.txt.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"
mkdir -p "$REALTIER_CACHE"
exec 9>"$REALTIER_CACHE/build.lock"
flock 9   # one build at a time (parallel checkouts share the cache)
export PYTHON=${PYTHON:-$PROJECT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
TIMES=$REALTIER_CACHE/build-times.txt
T0=$(date +%s)

# part NAME STAMPFILE STAMP CMD...: run CMD unless STAMPFILE holds STAMP; record STAMP after
part() {
  local name=$1 file=$2 stamp=$3; shift 3
  if [ "$(cat "$file" 2>/dev/null)" = "$stamp" ]; then rt_log "$name: up to date"; return 0; fi
  rt_log "$name: building (log $REALTIER_CACHE/$name.log)"
  local t; t=$(date +%s)
  rm -f "$file"
  if ! "$@" >"$REALTIER_CACHE/$name.log" 2>&1; then
    echo "realtier build of $name FAILED; last lines of $REALTIER_CACHE/$name.log:" >&2
    tail -n 30 "$REALTIER_CACHE/$name.log" >&2
    exit 1
  fi
  echo "$stamp" > "$file"
  echo "$name $(( $(date +%s) - t ))s ($(date -u +%FT%TZ))" >> "$TIMES"
  rt_log "$name: built in $(( $(date +%s) - t ))s"
}

GO_VERSION=$(go env GOVERSION)
part k8s "$K8S_OUT/.realtier-stamp" \
  "k8s=$K8S_VERSION etcd=$ETCD_VERSION $GO_VERSION $(hash_files "$LIB" build-k8s.sh)" \
  "$LIB/build-k8s.sh" "$K8S_OUT"
# build-node.sh reuses containerd/crictl binaries that exist: a version change must replace them
node_stamp="containerd=$CONTAINERD_VERSION crictl=$CRICTL_VERSION $GO_VERSION $(hash_files "$LIB" build-node.sh base-images.sh mkoci.py pause/main.go pause/go.mod)"
node_build() {
  local prev; prev=$(cat "$NODE_OUT/.realtier-stamp.versions" 2>/dev/null || true)
  local want="containerd=$CONTAINERD_VERSION crictl=$CRICTL_VERSION"
  if [ -n "$prev" ] && [ "$prev" != "$want" ]; then export REBUILD=1; fi
  "$LIB/build-node.sh" "$NODE_OUT" && "$LIB/base-images.sh" "$NODE_OUT" \
    && echo "$want" > "$NODE_OUT/.realtier-stamp.versions"
}
part node "$NODE_OUT/.realtier-stamp" "$node_stamp" node_build
part step-image "$NODE_OUT/.realtier-stamp.step-image" \
  "$(hash_files "$LIB" zenml-image.sh mkoci.py) base=$node_stamp src=$(project_source_hash)" \
  env WORK="$REALTIER_CACHE/step-image-build" "$LIB/zenml-image.sh" "$NODE_OUT" "$PROJECT"
rt_log "built or reused in $(( $(date +%s) - T0 ))s: $K8S_OUT/bin, $NODE_OUT/images"
