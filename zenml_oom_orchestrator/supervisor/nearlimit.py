"""The readiness probe that tells the supervisor a running step nears its memory limit.

The kubelet runs it once a second in the step's main container; it fails (exit 1) while the
container's working set is above a fraction of its current limit, so the kubelet flips the
container's ``ready`` to false and the supervisor's one pod watch sees it within about a
second: no API reads per step, no metrics-server, and no RBAC for the step pod (the kubelet
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
# (empty in pods; tests point it at a fake tree).
PROBE_SCRIPT = r"""k=$1; r=${2:-}
p=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' "$r/proc/self/cgroup" | head -n 1 | cut -d: -f3-)
if [ -n "$p" ]; then
  d=$r/sys/fs/cgroup/memory; [ -f "$d$p/memory.usage_in_bytes" ] && d=$d$p
  u=$(cat "$d/memory.usage_in_bytes"); m=$(cat "$d/memory.limit_in_bytes")
  i=$(sed -n 's/^total_inactive_file //p' "$d/memory.stat")
else
  p=$(sed -n 's/^0:://p' "$r/proc/self/cgroup" | head -n 1)
  d=$r/sys/fs/cgroup; [ -n "$p" ] && [ -f "$d$p/memory.current" ] && d=$d$p
  u=$(cat "$d/memory.current"); m=$(cat "$d/memory.max")
  i=$(sed -n 's/^inactive_file //p' "$d/memory.stat")
fi
[ "$m" = max ] && exit 0
w=$((u - ${i:-0}))
[ "$w" -le $((m / 1000 * k)) ]
"""


def permille(fraction: float) -> int:
    """The probe's threshold argument: `fraction` of the limit in thousandths."""
    return round(fraction * 1000)


def near_limit_probe(fraction: float) -> dict[str, Any]:
    """The main container's readinessProbe: not ready while above `fraction` of the limit."""
    return {
        "exec": {"command": ["sh", "-c", PROBE_SCRIPT, "oom-near-limit", str(permille(fraction))]},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 1,
    }
