#!/usr/bin/env bash
# down.sh STATEDIR — stop exactly the processes recorded in STATEDIR/pids/*.pid
# (never by name). SIGTERM, then SIGKILL after GRACE_S seconds. Keeps certs, logs and etcd data;
# add --purge to also delete etcd data (next up.sh starts from an empty cluster).
set -euo pipefail

STATEDIR=${1:?usage: down.sh STATEDIR [--purge]}
PURGE=${2:-}
STATEDIR=$(cd "$STATEDIR" && pwd -P)
PIDS=$STATEDIR/pids
GRACE_S=${GRACE_S:-15}
log() { echo "[down $(date +%H:%M:%S)] $*"; }

# ours NAME PID: true if PID is alive (not a zombie) and was started by up.sh/fake-node.sh for this
# STATEDIR, i.e. its environment holds REALK8S_STATEDIR=STATEDIR (guards against pid reuse)
ours() { grep -qzxF "REALK8S_STATEDIR=$STATEDIR" "/proc/$2/environ" 2>/dev/null; }

# stop in reverse dependency order: node-side first, etcd last; then anything else recorded
order="kubelet kube-scheduler kube-controller-manager kube-apiserver etcd"
for f in "$PIDS"/*.pid; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .pid)
  case " $order " in *" $n "*) ;; *) order="$n $order" ;; esac
done

left=0
for n in $order; do
  f="$PIDS/$n.pid"; [ -e "$f" ] || continue
  pid=$(cat "$f")
  if ! ours "$n" "$pid"; then log "$n (pid $pid) not running"; rm -f "$f"; continue; fi
  log "stopping $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $(( GRACE_S * 5 ))); do ours "$n" "$pid" || break; sleep 0.2; done
  if ours "$n" "$pid"; then log "$n did not exit, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; fi
  if ours "$n" "$pid"; then log "$n (pid $pid) STILL RUNNING"; left=1; else rm -f "$f"; fi
done

if [ "$PURGE" = "--purge" ]; then rm -rf "$STATEDIR/etcd"; log "etcd data removed"; fi
if [ "$left" = 0 ]; then log "all stopped"; else log "some processes are still running"; exit 1; fi
