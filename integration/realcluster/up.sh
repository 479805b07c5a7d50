#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# up.sh — one command for the real tier: build or reuse it (build.sh), then start a single real
# node on this machine (etcd, kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy,
# containerd), or reuse the one already running from the same state directory. ~15 s when built.
# Prints KUBECONFIG=... last. Stop with down.sh (also run on any failure here).
# The node has 8Gi allocatable (the rest of the host is systemReserved, so an exhausted node kills
# inside the kubepods cgroup, never the host); pods reach the API server through the `kubernetes`
# Service, and nothing else: no default route, and every registry is a closed loopback port.
# REALTIER_NO_BUILD=1 skips build.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=common.sh
. "$HERE/common.sh"
[ "$(id -u)" = 0 ] || { echo "the real tier needs root (cgroups, mounts, a bridge, iptables)" >&2; exit 1; }
[ "${REALTIER_NO_BUILD:-0}" = 1 ] || "$HERE/build.sh"
export BIN_DIR=$K8S_OUT/bin
KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATEDIR/kubeconfig")
CTR=("$NODE_OUT/bin/ctr" --address "$STATEDIR/containerd/run/containerd.sock" -n k8s.io)
ours() { grep -qzxF "REALK8S_STATEDIR=$STATEDIR" "/proc/$1/environ" 2>/dev/null; }

running() {
  local n
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    [ -s "$STATEDIR/pids/$n.pid" ] || return 1
    ours "$(cat "$STATEDIR/pids/$n.pid")" || return 1
  done
  "${KUBECTL[@]}" wait --for=condition=Ready node --all --timeout=5s >/dev/null 2>&1
}

import_images() {  # (re)import the image tars that changed since the last import
  local t
  for t in "$NODE_OUT"/images/*.tar; do
    if [ "$t" -nt "$STATEDIR/containerd/imported.$(basename "$t")" ]; then
      rt_log "importing $(basename "$t")"
      "${CTR[@]}" images import "$t" >/dev/null && touch "$STATEDIR/containerd/imported.$(basename "$t")"
    fi
  done
  for a in $IMAGE_ALIASES; do "${CTR[@]}" images tag --force "${a%%=*}" "${a#*=}" >/dev/null; done
}

if running; then
  rt_log "reusing the running real tier ($STATEDIR)"
  import_images
  echo "KUBECONFIG=$STATEDIR/kubeconfig"
  exit 0
fi

# Leftovers of an earlier, broken start go first; a failure from here on stops everything again.
"$HERE/down.sh" >/dev/null 2>&1 || true
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  echo "real tier did not come up (rc=$rc); stopping what started" >&2
  "$HERE/down.sh" >&2 || true
}
trap on_exit EXIT
mkdir -p "$STATEDIR/containerd" "$STATEDIR/logs"
T0=$(date +%s)

# The node's pods get NODE_MEMORY_KI allocatable: systemReserved = capacity - that - eviction.
mem_ki=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
reserved_ki=$(( mem_ki - NODE_MEMORY_KI - EVICTION_KI ))
[ "$reserved_ki" -gt 0 ] || { echo "this machine has less than $(( NODE_MEMORY_KI / 1024 ))Mi of memory" >&2; exit 1; }
export SYSTEM_RESERVED_MEMORY=${reserved_ki}Ki

# The bridge first: the API server binds to its address so that pods reach it via the Service.
export KUBE_PROXY=1 BRIDGE=rn0 BRIDGE_IP=10.88.0.1/16 API_ADDR=10.88.0.1
if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link add "$BRIDGE" type bridge && echo "$BRIDGE" > "$STATEDIR/containerd/bridge.created"
fi
[[ $(ip addr show dev "$BRIDGE") == *" ${BRIDGE_IP%/*}/"* ]] || ip addr add "$BRIDGE_IP" dev "$BRIDGE"
ip link set "$BRIDGE" up

"$LIB/control-plane-up.sh" "$STATEDIR" "$BIN_DIR"
"$LIB/node-up.sh" "$STATEDIR" "$NODE_OUT"
for t in "$NODE_OUT"/images/*.tar; do touch "$STATEDIR/containerd/imported.$(basename "$t")"; done
rt_log "real tier up in $(( $(date +%s) - T0 ))s: $("${KUBECTL[@]}" get node -o jsonpath='{.items[0].status.allocatable.memory}') allocatable"
echo "KUBECONFIG=$STATEDIR/kubeconfig"
