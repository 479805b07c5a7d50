"""The near-limit probe's cost on a real node: the CPU the kubelet, containerd and its shims
(with the `runc exec` children they reap) spend while N idle pods run, first without the probe,
then with it (`near_limit_probe`, as every attempt gets it).

    python integration/bench/probe_cost.py [--pods 9] [--seconds 60] [--period 1]

On the real tier (integration/realcluster, up; KUBECONFIG of `up.sh` or the tier's default), as
root on the node (it reads those processes' CPU from /proc). A benchmark that prints figures,
not a test (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from kubernetes import client, config

from zenml_oom_orchestrator.supervisor.nearlimit import near_limit_probe

KUBECONFIG = "/var/cache/zenml-oom/realtier/state/kubeconfig"
IMAGE = "localhost/zenml-oom:dev"  # the real tier's step image (any image with sh and sleep)
NAMESPACE = "probe-cost"
AGENTS = ("kubelet", "containerd")  # and every containerd-shim*


def agents_cpu_seconds() -> float:
    """utime + stime + children's, of the node's agents, from /proc."""
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if comm not in AGENTS and not comm.startswith("containerd-shim"):
                continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])
        except OSError:  # gone meanwhile
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def cores_used(core: Any, pods: int, seconds: int, probe: dict[str, Any] | None) -> float:
    for i in range(pods):
        container: dict[str, Any] = {
            "name": "main",
            "image": IMAGE,
            "command": ["sleep", "3600"],
            "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "64Mi"}},
        }
        if probe:
            container["readinessProbe"] = probe
        spec = {"containers": [container], "terminationGracePeriodSeconds": 0}
        core.create_namespaced_pod(NAMESPACE, {"metadata": {"name": f"idle-{i}"}, "spec": spec})
    while not all(p.status.phase == "Running" for p in core.list_namespaced_pod(NAMESPACE).items):
        time.sleep(1)
    time.sleep(10)  # past the containers' start
    before, started = agents_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    used = (agents_cpu_seconds() - before) / (time.monotonic() - started)
    core.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
    while core.list_namespaced_pod(NAMESPACE).items:
        time.sleep(1)
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="integration/bench/probe_cost.py")
    parser.add_argument("--pods", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--period", type=int, default=1, help="grow_check_seconds")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", KUBECONFIG))
    args = parser.parse_args(argv)
    core = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        without = cores_used(core, args.pods, args.seconds, None)
        probe = near_limit_probe(0.8, args.period)
        with_probe = cores_used(core, args.pods, args.seconds, probe)
    finally:
        core.delete_namespace(NAMESPACE)
    execs = args.pods / args.period
    print(
        f"{args.pods} idle pods for {args.seconds} s: node agents {without:.3f} cores without "
        f"the probe, {with_probe:.3f} with it (every {args.period} s): "
        f"{(with_probe - without) / execs * 1000:.1f} ms of CPU per exec; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
