#!/usr/bin/env bash
# node-down.sh STATEDIR — undo node-up.sh: stop the kubelet (pid in STATEDIR/pids/kubelet.pid),
# then containerd-down.sh (removes CRI pods/containers, stops containerd by its pid, removes the
# bridge it created), unmount what the kubelet left mounted under STATEDIR, rmdir the (empty)
# kubepods cgroups the kubelet created and restore the sysctls the kubelet changed.
# Signals only recorded pids whose environment carries REALK8S_STATEDIR=STATEDIR. Keeps
# images, logs and the API objects (pods stay in etcd; a later node-up.sh reconciles them).
set -uo pipefail

STATEDIR=${1:?usage: node-down.sh STATEDIR}
STATEDIR=$(cd "$STATEDIR" && pwd -P)
PIDS=$STATEDIR/pids; KDIR=$STATEDIR/kubelet; CSTATE=$STATEDIR/containerd
NODEOUT=${2:-$(cat "$STATEDIR/node.out" 2>/dev/null || echo "${REALNODE_OUT:-}")}
HERE=$(cd "$(dirname "$0")" && pwd -P)
REALNODE=$HERE   # containerd-up.sh / containerd-down.sh
GRACE_S=${GRACE_S:-15}
log() { echo "[node-down $(date +%H:%M:%S)] $*"; }
ours() { grep -qzxF "REALK8S_STATEDIR=$STATEDIR" "/proc/$1/environ" 2>/dev/null; }
rc=0

stop_pid() {  # stop_pid NAME PID
  local n=$1 pid=$2
  if ! ours "$pid"; then log "$n (pid $pid) not running"; return 0; fi
  log "stopping $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( GRACE_S * 5 ))); do ours "$pid" || break; sleep 0.2; done
  if ours "$pid"; then log "$n did not exit, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  if ours "$pid"; then log "$n (pid $pid) STILL RUNNING"; return 1; fi
}

# 1. kubelet
if [ -e "$PIDS/kubelet.pid" ]; then
  if stop_pid kubelet "$(cat "$PIDS/kubelet.pid")"; then rm -f "$PIDS/kubelet.pid"; else rc=1; fi
fi

# 1b. kube-proxy (KUBE_PROXY=1), then its iptables rules (`kube-proxy --cleanup`)
if [ -e "$PIDS/kube-proxy.pid" ]; then
  if stop_pid kube-proxy "$(cat "$PIDS/kube-proxy.pid")"; then rm -f "$PIDS/kube-proxy.pid"; else rc=1; fi
  KP_BIN=${BIN_DIR:-$STATEDIR/../bin}/kube-proxy
  if [ -x "$KP_BIN" ]; then
    if REALK8S_STATEDIR="$STATEDIR" "$KP_BIN" --cleanup --v=0 >>"$STATEDIR/logs/kube-proxy-cleanup.log" 2>&1; then
      log "kube-proxy rules removed"
    else
      log "kube-proxy --cleanup reported errors (see logs/kube-proxy-cleanup.log)"
    fi
  fi
fi

# 1c. the chains the kubelet adds itself (kube-proxy --cleanup leaves them): KUBE-FIREWALL on
#     INPUT/OUTPUT (drops packets to 127/8 from other sources), its canaries and a hint chain
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null 2>&1 || continue
  for chain in INPUT OUTPUT; do
    while "$ipt" -t filter -D "$chain" -j KUBE-FIREWALL 2>/dev/null; do :; done
  done
  for table in filter nat mangle; do
    for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
      if "$ipt" -t "$table" -F "$chain" 2>/dev/null; then "$ipt" -t "$table" -X "$chain" 2>/dev/null || rc=1; fi
    done
  done
done
left=$(iptables-save 2>/dev/null | grep -c -- '-j KUBE-\|^:KUBE-' || true)
[ "$left" = 0 ] || { log "$left iptables lines of Kubernetes remain (iptables-save | grep KUBE)"; rc=1; }

# 2. containerd + its workloads (only if the recorded containerd is ours)
if [ -e "$CSTATE/containerd.pid" ]; then
  cpid=$(cat "$CSTATE/containerd.pid")
  if ours "$cpid"; then
    [ -n "$NODEOUT" ] || { echo "NODEOUT unknown (no $STATEDIR/node.out): pass it as 2nd argument" >&2; exit 1; }
    log "containerd-down.sh $CSTATE $NODEOUT"
    "$REALNODE/containerd-down.sh" "$CSTATE" "$NODEOUT" 2>&1 | sed 's/^/  /'
    ours "$cpid" && { log "containerd (pid $cpid) STILL RUNNING"; rc=1; }
  elif kill -0 "$cpid" 2>/dev/null; then
    log "pid $cpid in $CSTATE/containerd.pid is not ours; leaving it"; rc=1
  else
    log "containerd (pid $cpid) not running"; rm -f "$CSTATE/containerd.pid"
  fi
fi
# the bridge, if we created it and containerd-down.sh did not remove it (containerd never started)
if [ -f "$CSTATE/bridge.created" ]; then
  if ip link del "$(cat "$CSTATE/bridge.created")" 2>/dev/null; then log "bridge removed"; fi
  rm -f "$CSTATE/bridge.created"
fi

# 3. mounts left under STATEDIR (kubelet volume tmpfs, containerd overlay/shm/netns), deepest first
for _ in 1 2 3; do
  mnts=$(awk -v p="$STATEDIR/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  [ -z "$mnts" ] && break
  for m in $mnts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
done
left=$(awk -v p="$STATEDIR/" 'index($5, p) == 1' /proc/self/mountinfo | wc -l)
[ "$left" = 0 ] || { log "$left mounts under $STATEDIR remain"; rc=1; }

# 4. kubepods cgroups (cgroupfs driver, cgroupRoot /): rmdir only, so non-empty ones stay
for h in /sys/fs/cgroup/*/; do
  [ -d "${h}kubepods" ] || continue
  find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
  [ -d "${h}kubepods" ] && { log "cgroup ${h}kubepods not empty, left in place"; rc=1; }
done

# 5. sysctls the kubelet rewrote
if [ -s "$KDIR/sysctl.orig" ]; then
  while read -r k v; do
    [ "$(cat "/proc/sys/$k" 2>/dev/null)" = "$v" ] || { echo "$v" > "/proc/sys/$k" && log "restored $k=$v"; }
  done < "$KDIR/sysctl.orig"
  rm -f "$KDIR/sysctl.orig"
fi

if [ "$rc" = 0 ]; then log "node stopped"; else log "node stopped with problems (see above)"; fi
exit "$rc"
