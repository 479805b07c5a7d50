"""The readiness probe that tells the supervisor a running step nears its memory limit.

The kubelet runs it every ``grow_check_seconds`` (default 5 s) in the step's main
container; it fails (exit 1) while the container's working set is above a fraction of its
current limit, so the kubelet flips the container's ``ready`` to false and the supervisor's one
pod watch sees it within about a period: no API reads per step, no metrics-server, and no RBAC for the step pod (the kubelet
writes the status). It is POSIX ``sh``, so any image with ``/bin/sh`` runs it.

Working set as the kubelet computes it: usage minus inactive file cache (cgroup v1:
``memory.usage_in_bytes - total_inactive_file``; v2: ``memory.current - inactive_file``). The
limit is read on each run, so after a growth the threshold moves with it. Which cgroup: the
path in ``/proc/self/cgroup`` under ``/sys/fs/cgroup[/memory]`` when that directory exists (a
process that sees the host's hierarchy), else the mount's root, which inside a container with
its own cgroup view (runc) is the container's own cgroup.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PROBE_SCRIPT", "near_limit_probe", "permille"]

# $1: the threshold in thousandths of the limit. $2: a root to read /proc and /sys under
# (empty in pods; tests point it at a fake tree). Shell builtins only (read, case, test,
# arithmetic): no process is forked, so the probe stays cheap and well inside its timeout on a
# loaded node (a timed-out probe fails, which would read as a crossing).
PROBE_SCRIPT = r"""k=$1; r=${2:-}; p=; v2=
while IFS=: read -r _ c g; do
  case ",$c," in *,memory,*) p=$g ;; esac
  [ -z "$c" ] && v2=$g
done < "$r/proc/self/cgroup"
if [ -n "$p" ]; then
  d=$r/sys/fs/cgroup/memory; [ -f "$d$p/memory.usage_in_bytes" ] && d=$d$p
  read -r u < "$d/memory.usage_in_bytes"; read -r m < "$d/memory.limit_in_bytes"
  key=total_inactive_file
else
  d=$r/sys/fs/cgroup; [ -n "$v2" ] && [ -f "$d$v2/memory.current" ] && d=$d$v2
  read -r u < "$d/memory.current"; read -r m < "$d/memory.max"; key=inactive_file
fi
i=0
while read -r n v; do [ "$n" = "$key" ] && i=$v; done < "$d/memory.stat"
[ "$m" = max ] && exit 0
[ $((u - i)) -le $((m / 1000 * k)) ]
"""


def permille(fraction: float) -> int:
    """The probe's threshold argument: `fraction` of the limit in thousandths."""
    return round(fraction * 1000)


def near_limit_probe(fraction: float, period_seconds: int = 5) -> dict[str, Any]:
    """The main container's readinessProbe: not ready while above `fraction` of the limit,
    checked every `period_seconds`."""
    return {
        "exec": {"command": ["sh", "-c", PROBE_SCRIPT, "oom-near-limit", str(permille(fraction))]},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 5,  # slow is not near the limit: only the script's answer fails it
        "successThreshold": 1,
        "failureThreshold": 1,
    }
