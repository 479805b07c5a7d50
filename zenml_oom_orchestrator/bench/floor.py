"""The floor: what the control plane pays for the workload's pods whoever orchestrates them.

It creates every attempt pod of the workload at once, with the memory each ends with (an OOM
step's first attempt at 256Mi, which is OOMKilled, and its second at 512Mi, side by side), then
watches until every container has ended: no judging, no retry logic, no Events of its own, no
polling. The API server then serves only what any orchestrator's pods cost it (the creates, the
scheduler's bindings and Events, the kubelet's (KWOK's) status patches). The benchmark
subtracts this scenario's kube-apiserver + etcd CPU from ours and the baseline's to show what
each client adds on top of the pods themselves (BENCHMARKS.md).

`python -m zenml_oom_orchestrator.bench.floor --kubeconfig K --namespace NS --run-id R ...`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from zenml_oom_orchestrator.bench import workload
from zenml_oom_orchestrator.bench.stamps import LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP


def pods(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every attempt of the workload as a Pod, named as the supervisor names attempts."""
    out = []
    for i in range(args.steps):
        oom = workload.is_oom_step(i, args.oom_fraction)
        seconds = workload.attempt_length(i, args.attempt_seconds, args.jitter)
        for attempt, memory in [(1, "256Mi"), (2, "512Mi")][: 2 if oom else 1]:
            pod = workload.pod_template(seconds, oom, args.sim)
            name = workload.step_name(i)
            pod["metadata"].update(
                name=f"{name}-a{attempt}",
                labels={LABEL_RUN: args.run_id, LABEL_STEP: name, LABEL_ATTEMPT: str(attempt)},
            )
            main = pod["spec"]["containers"][0]
            main["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}
            pod["spec"]["restartPolicy"] = "Never"
            out.append(pod)
    return out


def create(core: k8s.CoreV1Api, namespace: str, pod: dict[str, Any]) -> None:
    for attempt in range(20):  # 429 from API Priority and Fairness: back off
        try:
            core.create_namespaced_pod(namespace, pod, _preload_content=False)
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status not in (429, 500, 503) or attempt == 19:
                raise
            time.sleep(0.5)


def ended(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("terminated" in (s.get("state") or {}) for s in statuses)


def wait_all_ended(core: k8s.CoreV1Api, namespace: str, run_id: str, total: int) -> None:
    """One list, then a watch, until every pod's containers have ended."""
    selector = f"{LABEL_RUN}={run_id}"
    body = json.loads(
        core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
    )
    done = {p["metadata"]["name"] for p in body["items"] if ended(p)}
    rv = body["metadata"]["resourceVersion"]
    while len(done) < total:
        resp = core.list_namespaced_pod(
            namespace,
            label_selector=selector,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=60,
            _preload_content=False,
        )
        for line in iter_resp_lines(resp):
            event = json.loads(line)
            obj = event.get("object") or {}
            rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if event.get("type") in ("ADDED", "MODIFIED") and ended(obj):
                done.add(obj["metadata"]["name"])
                if len(done) >= total:
                    resp.close()
                    break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench.floor")
    workload.add_client_args(parser)
    args = parser.parse_args(argv)
    core = k8s.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    manifests = pods(args)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: create(core, args.namespace, p), manifests))
    wait_all_ended(core, args.namespace, args.run_id, len(manifests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
