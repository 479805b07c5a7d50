#!/usr/bin/env bash
# containerd-down.sh STATEDIR [OUTDIR]
# Stops what containerd-up.sh started: first the CRI pods/containers and ctr tasks that live in this
# containerd (so their shims exit), then containerd itself by the pid in STATEDIR/containerd.pid,
# then removes the bridge only if containerd-up.sh created it.  Kills nothing by name.
set -uo pipefail
STATE=${1:?usage: containerd-down.sh STATEDIR [OUTDIR]}
STATE=$(cd "$STATE" && pwd -P)
OUT=${2:-${REALNODE_OUT:-$(dirname "$STATE")/out}}
SOCK="$STATE/run/containerd.sock"
PIDF="$STATE/containerd.pid"

if [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null; then
  if [ "${KEEP_WORKLOADS:-0}" != 1 ]; then
    if [ -x "$OUT/bin/crictl" ]; then
      C="$OUT/bin/crictl --runtime-endpoint unix://$SOCK --image-endpoint unix://$SOCK --timeout 20s"
      for p in $($C pods -q 2>/dev/null); do $C stopp "$p" >/dev/null 2>&1; $C rmp -f "$p" >/dev/null 2>&1; done
    fi
    for ns in $("$OUT/bin/ctr" --address "$SOCK" namespaces ls -q 2>/dev/null); do
      for t in $("$OUT/bin/ctr" --address "$SOCK" -n "$ns" tasks ls -q 2>/dev/null); do
        "$OUT/bin/ctr" --address "$SOCK" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1
        sleep 0.5
        "$OUT/bin/ctr" --address "$SOCK" -n "$ns" tasks delete -f "$t" >/dev/null 2>&1
      done
      for c in $("$OUT/bin/ctr" --address "$SOCK" -n "$ns" containers ls -q 2>/dev/null); do
        "$OUT/bin/ctr" --address "$SOCK" -n "$ns" containers delete "$c" >/dev/null 2>&1
      done
    done
  fi
  pid=$(cat "$PIDF")
  kill -TERM "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then echo "containerd $pid did not stop on TERM; sending KILL"; kill -KILL "$pid"; fi
  echo "containerd $pid stopped"
else
  echo "containerd not running"
fi
rm -f "$PIDF"

# leftover shims of THIS containerd only: executable is our shim binary and its -address is our socket
SHIM=$(readlink -f "$OUT/bin/containerd-shim-runc-v2" 2>/dev/null || true)
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$(readlink -f "$d/exe" 2>/dev/null)" = "$SHIM" ] || continue
  tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF -- "$SOCK" || continue
  echo "leftover shim pid $p: $(tr '\0' ' ' <"$d/cmdline" | cut -c1-160)"; kill -TERM "$p" 2>/dev/null
done

# Fixed default dirs that containerd 2.x creates regardless of config: shim sockets (/run/containerd/s)
# and the libcni result cache (/var/lib/cni/results). Remove them only if empty.
if [ "${CLEAN_DEFAULT_DIRS:-1}" = 1 ]; then
  for d in /run/containerd/s /run/containerd/fifo /run/containerd /var/lib/cni/results /var/lib/cni; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null
  done
fi

if [ -f "$STATE/bridge.created" ]; then
  br=$(cat "$STATE/bridge.created")
  ip link del "$br" 2>/dev/null && echo "bridge $br removed"
  rm -f "$STATE/bridge.created"
fi
