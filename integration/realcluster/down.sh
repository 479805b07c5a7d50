#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# down.sh — stop the real tier started by up.sh and clean up after it, also after a failed start:
# kubelet, kube-proxy (and its iptables rules), pods, containerd and its shims, the bridge,
# mounts, the kubepods cgroups (rmdir), the sysctls the kubelet changed, then scheduler,
# controller-manager, API server and etcd (its data is deleted: the next up.sh starts empty).
# Stops only the processes recorded in the state directory and started by this tier.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
# shellcheck source=common.sh
. "$HERE/common.sh"
[ -d "$STATEDIR" ] || { rt_log "nothing to stop ($STATEDIR does not exist)"; exit 0; }
export BIN_DIR=$K8S_OUT/bin
rc=0
"$LIB/node-down.sh" "$STATEDIR" "$NODE_OUT" || rc=1
"$LIB/control-plane-down.sh" "$STATEDIR" --purge || rc=1
rm -f "$STATEDIR"/containerd/imported.*
if [ "$rc" = 0 ]; then rt_log "real tier stopped"; else rt_log "real tier stopped with problems (above)"; fi
exit "$rc"
