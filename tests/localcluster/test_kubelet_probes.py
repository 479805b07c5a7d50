"""Exec readiness probes as kubelet 1.35 runs them: inside the container (its memory cgroup,
env, working dir), with thresholds and timeouts, reported in `ready`, the pod's Ready and
ContainersReady conditions and `Unhealthy` Events (facts checked on the real tier)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.events import record_event
from zenml_oom_orchestrator.localcluster.kubelet.prober import ProbeSpec, apply_probe_result
from zenml_oom_orchestrator.localcluster.kubelet.status import ContainerRecord
from zenml_oom_orchestrator.localcluster.kubelet.testing import (
    events_for,
    pod_body,
    wait_pod,
)
from zenml_oom_orchestrator.localcluster.store import Store
from zenml_oom_orchestrator.localcluster.testing import pids_with, wait_for

from .real_cgroups import node

__all__ = ["node"]  # fixture

pytestmark = pytest.mark.cluster

# What the product's step pods run (issue 12): the container's working set (usage minus
# inactive file, as the kubelet computes it) against its limit, from its own memory cgroup,
# found through /proc/self/cgroup (a real container sees its own at the mount point itself).
MEMORY_PROBE = r"""
p=$(sed -n 's/^[0-9]*:[^:]*memory[^:]*:\(.*\)$/\1/p' /proc/self/cgroup)
if [ -n "$p" ]; then
  d=/sys/fs/cgroup/memory$p; [ -d "$d" ] || d=/sys/fs/cgroup/memory
  u=$(cat $d/memory.usage_in_bytes); l=$(cat $d/memory.limit_in_bytes)
  i=$(sed -n 's/^total_inactive_file //p' $d/memory.stat)
else
  p=$(sed -n 's/^0:://p' /proc/self/cgroup); d=/sys/fs/cgroup$p; [ -d "$d" ] || d=/sys/fs/cgroup
  u=$(cat $d/memory.current); l=$(cat $d/memory.max); i=$(sed -n 's/^inactive_file //p' $d/memory.stat)
fi
w=$((u - i)); echo "working set $w of $l in $d"; [ $((w * 100)) -lt $((l * 50)) ]
"""


def probed(name: str, command: list[str], probe: list[str], **fields: Any) -> dict[str, Any]:
    body = pod_body(name, command, "256Mi")
    body["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": probe},
        "periodSeconds": 1,
        "timeoutSeconds": 5,  # a slow machine (the cgroup v2 VM under TCG) needs > 1 s to exec
        **fields,
    }
    return body


def conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in pod["status"].get("conditions") or []}


def ready_history(store: Store, name: str, rv: str, until: float) -> list[Any]:
    """(containerStatuses[0].ready, Ready condition status/reason/message) per status write."""
    seen: list[Any] = []
    with store.watch("pods", resource_version=rv, field_selector=f"metadata.name={name}") as w:
        while time.monotonic() < until:
            got = w.next_shared(0.2)
            if got is None:
                continue
            status = got[1].get("status") or {}
            cs = (status.get("containerStatuses") or [{}])[0]
            ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            item = (cs.get("ready"), ready.get("status"), ready.get("reason"), ready.get("message"))
            if not seen or seen[-1] != item:
                seen.append(item)
            if status.get("phase") in ("Succeeded", "Failed"):
                break
    return seen


def test_probe_runs_in_the_containers_cgroup_env_and_working_dir_and_sets_ready(
    node: tuple[Store, Kubelet], tmp_path: Path
) -> None:
    """Unready until the probe passes, ready, unready again: each in `ready`, Ready and
    ContainersReady as a real kubelet writes them, and every failure an Unhealthy Event whose
    message is the probe's stdout and stderr."""
    store, kubelet = node
    work = tmp_path / "work"
    script = (
        "import os, time; time.sleep(2); open('ready', 'w').close(); time.sleep(2.5); "
        "os.remove('ready'); time.sleep(2)"
    )
    probe = ["sh", "-c", "cat /proc/self/cgroup; echo $FOO $(pwd) >&2; test -f ready"]
    body = probed("p", [sys.executable, "-c", script], probe, failureThreshold=1)
    body["spec"]["containers"][0].update(
        workingDir=str(work), env=[{"name": "FOO", "value": "from-the-pod"}]
    )
    rv = store.resource_version
    created = store.create("pods", body)
    history = ready_history(store, "p", rv, time.monotonic() + 30)
    unready = (False, "False", "ContainersNotReady", "containers with unready status: [main]")
    assert (True, "True", None, None) in history, history
    ready_at = history.index((True, "True", None, None))
    assert unready in history[:ready_at] and unready in history[ready_at:], history
    pod = wait_pod(store, "p")
    assert conditions(pod)["Ready"]["reason"] == "PodCompleted"
    failed = [e for e in events_for(store, "p") if e["reason"] == "Unhealthy"]
    assert failed and all(e["type"] == "Warning" for e in failed)
    assert sum(e["count"] for e in failed) >= 2
    message = failed[0]["message"]
    assert message.startswith("Readiness probe failed: ")
    container_cgroup = kubelet.backend.root / created["metadata"]["uid"] / "main"
    mount = kubelet.backend.mount
    assert f":/{container_cgroup.relative_to(mount)}\n" in message, message
    assert f"from-the-pod {work}\n" in message
    assert failed[0]["involvedObject"]["fieldPath"] == "spec.containers{main}"


def test_memory_probe_script_sees_the_containers_own_cgroup(node: tuple[Store, Kubelet]) -> None:
    """The product's probe script: ready under half the limit, unready once the container's
    working set passes it (the probe reads the container's cgroup, not the kubelet's)."""
    store, _ = node
    script = (
        "import time; time.sleep(1.5); b = bytearray(160 << 20); b[::4096] = b'x' * (40 << 10); "
        "print('holding', flush=True); time.sleep(3)"
    )
    rv = store.resource_version
    store.create("pods", probed("m", [sys.executable, "-c", script], ["sh", "-c", MEMORY_PROBE]))
    history = ready_history(store, "m", rv, time.monotonic() + 30)
    assert [r for r, *_ in history if r is not None][:3] == [False, True, False], history
    failed = [e for e in events_for(store, "m") if e["reason"] == "Unhealthy"]
    assert failed and "of 268435456 in /sys/fs/cgroup" in failed[-1]["message"], failed


def test_initial_delay_and_timeout(node: tuple[Store, Kubelet]) -> None:
    """No result inside initialDelaySeconds; a probe over timeoutSeconds is killed and fails
    with the kubelet's words."""
    store, _ = node
    marker = f"probe-sleep-{time.time_ns()}"
    body = probed(
        "slow",
        [sys.executable, "-c", "import time; time.sleep(6)"],
        ["sh", "-c", f"sleep 30 # {marker}"],
        initialDelaySeconds=2,
        timeoutSeconds=1,
    )
    store.create("pods", body)
    wait_pod(store, "slow", ("Running",))
    started = time.monotonic()
    wait_for(lambda: any(e["reason"] == "Unhealthy" for e in events_for(store, "slow")), 15)
    assert time.monotonic() - started >= 2.0
    event = next(e for e in events_for(store, "slow") if e["reason"] == "Unhealthy")
    assert event["message"] == (
        f'Readiness probe failed: command timed out: "sh -c sleep 30 # {marker}" timed out after 1s'
    )
    wait_for(lambda: not pids_with(marker), 5)  # the timed-out probe was killed
    pod = store.get("pods", "default", "slow")
    assert pod["status"]["containerStatuses"][0]["ready"] is False


def test_failure_and_success_thresholds(node: tuple[Store, Kubelet], tmp_path: Path) -> None:
    """Ready only after successThreshold passes in a row, unready only after failureThreshold
    failures in a row; a failure below the threshold is still an Event."""
    store, _ = node
    # Probe n (counted in a file): passes for n in 3..4 and from 8 on; fails otherwise.
    count = tmp_path / "n"
    probe = (
        f"n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}.new; "
        f"mv {count}.new {count}; echo try $n; "
        "{ [ $n -ge 3 ] && [ $n -le 4 ]; } || [ $n -ge 8 ]"
    )
    body = probed(
        "t",
        [sys.executable, "-c", "import time; time.sleep(30)"],
        ["sh", "-c", probe],
        successThreshold=2,
        failureThreshold=3,
    )
    rv = store.resource_version
    store.create("pods", body)

    def tries() -> int:  # probes started so far (renamed into place: never half-written)
        return int(count.read_text()) if count.exists() else 0

    seen: list[tuple[int, bool]] = []
    with store.watch("pods", resource_version=rv, field_selector="metadata.name=t") as w:
        deadline = time.monotonic() + 40
        while tries() < 10 and time.monotonic() < deadline:
            got = w.next_shared(0.1)
            if got is not None:
                cs = ((got[1].get("status") or {}).get("containerStatuses") or [{}])[0]
                if cs.get("ready") is not None and (not seen or seen[-1][1] != cs["ready"]):
                    seen.append((tries(), cs["ready"]))
    # ready after try 4 (3 and 4 pass); 5 and 6 fail below the threshold, 7 is the third
    # failure; ready again after 9 (8 and 9 pass).
    assert [r for _, r in seen] == [False, True, False, True], seen
    # The next probe may already have started when the test sees a write (one starts at once
    # when the container turns unready): each transition is seen at its probe or the next.
    for (n, _), expected in zip(seen[1:], (4, 7, 9), strict=True):
        assert n in (expected, expected + 1), seen
    messages = {e["message"] for e in events_for(store, "t") if e["reason"] == "Unhealthy"}
    assert {f"Readiness probe failed: try {n}\n" for n in (1, 2, 5, 6, 7)} <= messages


def test_thresholds_count_equal_results_in_a_row() -> None:
    """The prober worker's arithmetic alone, exactly (the test above runs it for real, where
    a busy machine blurs which probe a write follows)."""
    recorded: list[str] = []
    kubelet = SimpleNamespace(record=lambda pod, reason, message, *a, **k: recorded.append(message))
    worker = SimpleNamespace(kubelet=kubelet, pod={})
    rec = ContainerRecord({"name": "main"}, proc="proc", probe_ready=False)
    spec = ProbeSpec({"successThreshold": 2, "failureThreshold": 3})
    rec.prober = SimpleNamespace(spec=spec, trigger=lambda: recorded.append("trigger"))
    readiness = []
    for ok in (False, True, True, False, False, True, False, False, False, True, True):
        apply_probe_result(worker, rec, "proc", ok, "out")
        readiness.append(rec.probe_ready)
    assert readiness == [False, False, True, True, True, True, True, True, False, False, True]
    assert recorded.count("trigger") == 1  # once, when it turned unready
    assert recorded.count("Readiness probe failed: out") == 6
    apply_probe_result(worker, rec, "an older run", False, "late")
    assert rec.probe_ready and "Readiness probe failed: late" not in recorded


def test_a_pod_without_readiness_probe_is_ready_when_running(
    node: tuple[Store, Kubelet],
) -> None:
    store, _ = node
    store.create("pods", pod_body("plain", [sys.executable, "-c", "import time; time.sleep(5)"]))
    wait_for(
        lambda: (
            conditions(store.get("pods", "default", "plain")).get("Ready", {}).get("status")
            == "True"
        ),
        15,
    )
    pod = store.get("pods", "default", "plain")
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    assert conditions(pod)["ContainersReady"]["status"] == "True"


def test_events_aggregate_after_ten_messages_and_a_repeat_stops_at_25() -> None:
    """client-go's recorder as the real kubelet showed it: nine Unhealthy Events with their own
    messages, then one "(combined from similar events)" Event counting the rest and carrying
    the latest message; one message repeated every second stops counting at 25."""
    store = Store()
    pod = store.create("pods", pod_body("e", ["true"]))
    for n in range(15):
        record_event(store, pod, "Unhealthy", f"Readiness probe failed: {n}\n", "Warning")
    events = events_for(store, "e")
    assert len(events) == 10
    combined = [e for e in events if e["message"].startswith("(combined from similar events): ")]
    assert len(combined) == 1
    assert combined[0]["count"] == 6
    assert combined[0]["message"].endswith("Readiness probe failed: 14\n")
    other = store.create("pods", pod_body("f", ["true"]))
    for _ in range(40):
        record_event(store, other, "Unhealthy", "Readiness probe failed: same\n", "Warning")
    (repeated,) = events_for(store, "f")
    assert repeated["count"] == 25
