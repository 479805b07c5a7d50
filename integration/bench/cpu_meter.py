"""Where a run's CPU goes on the real tier's node: each pod's cgroup, the ZenML server, the
machine as a whole. Read from the kernel (cpuacct, /proc), not from anything the product says.

Sampled while the run is watched: a pod's cgroup goes with the pod, so the last sample before it
goes is its figure (at most one sampling interval short). Needs root on the node (the real tier
runs its kubelet with the cgroupfs driver under `/kubepods`, cgroup v1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# cpuacct is mounted alone on some machines (this one), with cpu on others
KUBEPODS = next(
    (
        p
        for p in (
            Path("/sys/fs/cgroup/cpuacct/kubepods"),
            Path("/sys/fs/cgroup/cpu,cpuacct/kubepods"),
        )
        if p.is_dir()
    ),
    Path("/sys/fs/cgroup/cpuacct/kubepods"),
)


def machine_cpu_seconds() -> float:
    """All CPUs' busy time since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pod_cgroups() -> dict[str, Path]:
    """Every pod cgroup under kubepods (any QoS class), by pod uid."""
    found: dict[str, Path] = {}
    for parent in (KUBEPODS, KUBEPODS / "burstable", KUBEPODS / "besteffort"):
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("pod"):
                found[entry.name[3:].replace("_", "-")] = entry
    return found


@dataclass
class CpuMeter:
    """CPU seconds spent from start() on: per new pod (by uid), by the server, by the machine.

    `pod_roles` lists the pods the API has now as {uid: role}; it is asked when a pod cgroup
    appears whose pod has no role yet, while that pod still exists."""

    server_pid: int | None
    pod_roles: Callable[[], dict[str, str]]
    pods: dict[str, float] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    _old: set[str] = field(default_factory=set)
    _machine0: float = 0.0
    _server0: float = 0.0
    machine: float = 0.0
    server: float = 0.0

    def start(self) -> None:
        self._old = set(pod_cgroups())  # earlier runs' pods are not this run's
        self._machine0 = machine_cpu_seconds()
        self._server0 = self._server_now()
        self.pods.clear()

    def sample(self) -> None:
        for uid, path in pod_cgroups().items():
            if uid in self._old:
                continue
            try:
                used = int((path / "cpuacct.usage").read_text()) / 1e9
            except (OSError, ValueError):  # removed between the listing and the read
                continue
            self.pods[uid] = max(used, self.pods.get(uid, 0.0))
            if uid not in self.roles:
                self.roles.update(self.pod_roles())
        self.machine = machine_cpu_seconds() - self._machine0
        self.server = self._server_now() - self._server0

    def by_role(self) -> dict[str, float]:
        """CPU seconds per role ("unknown": a pod gone before the API was asked)."""
        totals: dict[str, float] = {}
        for uid, used in self.pods.items():
            role = self.roles.get(uid, "unknown")
            totals[role] = totals.get(role, 0.0) + used
        return totals

    def _server_now(self) -> float:
        return process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
