"""`python -m zenml_oom_orchestrator.bench.growth`: how fast in-place growth acts (issue 12 §7).

Two figures, on the local cluster (`--cluster local`, started here) or on the cluster of
`$KUBECONFIG` (`--cluster real`, e.g. the real tier):

- latency: steps that grow steadily (`--rate` MiB/s, from 512Mi to `--mib` MiB) under the
  supervisor with the default policy (`--check-seconds` sets grow_check_seconds). Each step
  samples its own memory cgroup every 5 ms in a thread and prints when its working set first
  passed 80 % of a limit and when the cgroup's limit changed: "crossing -> new limit in force
  in the cgroup", measured inside the container on one clock. Also the supervisor's own view (ready=false seen -> status in force).
- fastest rate: one step per rate (up by 25 % from `--min-rate` until one is OOM-killed),
  growing from 512Mi to 1600 MiB (a 2Gi limit after two growths) with the same policy and no
  OOM retries; the fastest rate
  that still finishes without an OOM kill.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from zenml_oom_orchestrator.policy import OOMPolicy
from zenml_oom_orchestrator.supervisor import RunSpec, StepSpec, Supervisor, naming

MI = 2**20
IMAGE = "python:3.11"

# The step: allocate at a steady rate; a thread samples the cgroup (same lookup as the probe).
STEP = r"""
import os, threading, time
rate, total, fraction = {rate}, {total}, 0.8
def cgroup():
    lines = open("/proc/self/cgroup").read().splitlines()
    v1 = [l.split(":", 2)[2] for l in lines if "memory" in l.split(":")[1].split(",")]
    if v1:
        base, files = "/sys/fs/cgroup/memory", ("memory.usage_in_bytes", "memory.limit_in_bytes", "total_inactive_file")
        path = v1[0]
    else:
        base, files = "/sys/fs/cgroup", ("memory.current", "memory.max", "inactive_file")
        path = [l[3:] for l in lines if l.startswith("0::")][0]
    d = base + path if os.path.exists(base + path + "/" + files[0]) else base
    return d, files
d, (usage_f, limit_f, inactive_key) = cgroup()
def read(name):
    with open(d + "/" + name) as f:
        return f.read()
def sample():
    usage, limit = int(read(usage_f)), read(limit_f).strip()
    inactive = 0
    for line in read("memory.stat").splitlines():
        k, _, v = line.partition(" ")
        if k == inactive_key:
            inactive = int(v)
    return usage - inactive, (int(limit) if limit != "max" else None)
done = False
def watch():
    crossed = {{}}
    last = sample()[1]
    while not done:
        ws, limit = sample()
        now = time.time()
        if limit and limit not in crossed and ws > fraction * limit:
            crossed[limit] = now
            print("CROSS", repr(now), limit, flush=True)
        if limit != last:
            print("LIMIT", repr(now), last, limit, flush=True)
            last = limit
        time.sleep(0.005)
threading.Thread(target=watch, daemon=True).start()
kept, n, t0 = [], 0, time.monotonic()
while n < total:
    b = bytearray(5 << 20); b[::4096] = b"\x01" * len(range(0, len(b), 4096))
    kept.append(b); n += 5
    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
time.sleep(0.2)
done = True
print("DONE", n, flush=True)
"""


def step_template(rate: float, total_mib: int) -> dict[str, Any]:
    code = STEP.format(rate=rate, total=total_mib)
    return {
        "spec": {
            "containers": [{"name": "main", "image": IMAGE, "command": ["python", "-c", code]}],
            "terminationGracePeriodSeconds": 2,
        }
    }


def cgroup_events(log: str) -> list[tuple[int, float, float]]:
    """(old limit, crossing, limit changed) epoch seconds for each growth, from a step's log."""
    crossings: dict[int, float] = {}
    out = []
    for line in log.splitlines():
        parts = line.split()
        if parts[:1] == ["CROSS"]:
            crossings[int(parts[2])] = float(parts[1])
        elif parts[:1] == ["LIMIT"] and parts[2] != "None" and int(parts[2]) in crossings:
            out.append((int(parts[2]), crossings[int(parts[2])], float(parts[1])))
    return out


def cgroup_latencies(log: str) -> list[float]:
    """Seconds from each crossing to the next limit change, from a step's own log."""
    return [changed - crossed for _, crossed, changed in cgroup_events(log)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def open_cluster(kind: str) -> Iterator[Any]:
    """An ApiClient for the chosen cluster (the local one is started and stopped here)."""
    if kind == "real":
        yield k8s_config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
        return
    from zenml_oom_orchestrator.localcluster.cluster import LocalCluster

    with LocalCluster(memory="8Gi") as cluster:
        yield cluster.api_client()


@contextlib.contextmanager
def namespace(api: Any) -> Iterator[str]:
    core = k8s.CoreV1Api(api)
    name = f"bench-growth-{os.getpid()}-{int(time.time()) % 100000}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            core.delete_namespace(name)


def run_steps(
    api: Any, ns: str, run_id: str, steps: list[StepSpec], parallel: int
) -> tuple[Any, dict[str, str]]:
    spec = RunSpec(run_id=run_id, namespace=ns, steps=steps, max_parallelism=parallel)
    result = Supervisor(api, spec).run()
    core = k8s.CoreV1Api(api)
    logs = {}
    for pod in core.list_namespaced_pod(ns, label_selector=naming.run_selector(run_id)).items:
        logs[pod.metadata.name] = core.read_namespaced_pod_log(pod.metadata.name, ns)
    return result, logs


def policy_checked_every(seconds: int) -> OOMPolicy:
    return OOMPolicy(initial_memory="512Mi", max_oom_retries=0, grow_check_seconds=seconds)


def latency(
    api: Any, ns: str, steps: int, parallel: int, rate: float, mib: int, check: int
) -> None:
    policy = policy_checked_every(check)
    specs = [
        StepSpec(name=f"grow-{i}", pod_template=step_template(rate, mib), policy=policy)
        for i in range(steps)
    ]
    result, logs = run_steps(api, ns, "latency", specs, parallel)
    inside = [s for log in logs.values() for s in cgroup_latencies(log)]
    seen = [
        g.seconds
        for s in result.steps.values()
        for a in s.attempts
        for g in a.growths
        if g.grew and g.seconds is not None
    ]
    # Split by the supervisor's record of when it saw the crossing (same host clock).
    detect, act = [], []
    for s in result.steps.values():
        for a in s.attempts:
            log = logs.get(naming.attempt_name("latency", s.name, a.number), "")
            by_limit = {old: (crossed, changed) for old, crossed, changed in cgroup_events(log)}
            for g in a.growths:
                if g.grew and g.from_limit in by_limit:
                    crossed, changed = by_limit[g.from_limit]
                    detect.append(g.at - crossed)
                    act.append(changed - g.at)
    ok = sum(1 for s in result.steps.values() if s.status.value == "succeeded")
    print(f"latency: {steps} steps at {rate:g} MiB/s to {mib} MiB, {ok} finished in one attempt")
    for label, values in (
        ("crossing -> limit in force (cgroup)", inside),
        ("  of which crossing -> supervisor sees not ready", detect),
        ("  of which supervisor sees it -> limit in force", act),
        ("supervisor: not ready seen -> in force seen in status", seen),
    ):
        if values:
            print(
                f"  {label}: n={len(values)} p50={percentile(values, 0.5):.2f}s "
                f"p99={percentile(values, 0.99):.2f}s max={max(values):.2f}s "
                f"mean={statistics.fmean(values):.2f}s"
            )


def fastest_rate(api: Any, ns: str, min_rate: float, max_rate: float, check: int) -> None:
    policy = policy_checked_every(check)
    rate, best = min_rate, None
    while rate <= max_rate:  # 25 % steps: the answer to within a quarter
        template = step_template(rate, 1600)
        spec = StepSpec(name=f"rate-{int(rate)}", pod_template=template, policy=policy)
        result, _ = run_steps(api, ns, f"rate-{int(rate)}", [spec], 1)
        (step,) = result.steps.values()
        attempt = step.attempts[-1]
        kind = attempt.outcome.kind.value if attempt.outcome else "?"
        grown = ", ".join(g.describe() for g in attempt.growths)
        print(f"  {rate:g} MiB/s: {kind} ({grown})")
        if kind != "succeeded":
            break
        best, rate = rate, round(rate * 1.25)
    print(f"fastest steady rate finishing 512Mi -> 2Gi limit without an OOM kill: {best} MiB/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench.growth")
    p.add_argument("--cluster", choices=["local", "real"], default="local")
    p.add_argument("--steps", type=int, default=10, help="latency: steps (2 growths each)")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--rate", type=float, default=50.0, help="latency: MiB/s")
    p.add_argument("--mib", type=int, default=1200, help="latency: MiB each step reaches")
    p.add_argument("--min-rate", type=float, default=50.0)
    p.add_argument("--max-rate", type=float, default=1600.0)
    p.add_argument("--skip-rate", action="store_true")
    p.add_argument(
        "--check-seconds",
        type=int,
        default=OOMPolicy().grow_check_seconds,
        help="grow_check_seconds (default: the policy's; BENCHMARKS.md's issue 12 figures used 1)",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(), open_cluster(args.cluster) as api, namespace(api) as ns:
        print(f"cluster: {args.cluster}, namespace {ns}")
        print(f"near-limit check every {args.check_seconds} s")
        latency(api, ns, args.steps, args.parallel, args.rate, args.mib, args.check_seconds)
        if not args.skip_rate:
            fastest_rate(api, ns, args.min_rate, args.max_rate, args.check_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
