"""The polling baseline: what ZenML 0.98's stock Kubernetes orchestrator pod does, minimally.

Faithful to `kubernetes_orchestrator_entrypoint.py` + `DagRunner` where it costs API requests:
- each step runs as a Job (podFailurePolicy as stock, backoffLimit = retries + margin = 0);
- one monitoring thread walks the running steps one after another (`job_monitoring_delay` 0)
  and for each reads the Job and, while it runs, lists its Pending pods (stock's default
  `fail_on_container_waiting_reasons`); a failed Job's pods are listed for the message; then
  it sleeps what is left of `job_monitoring_interval` (3 s);
- the main loop looks for startable steps every 0.5 s and starts them on a 10-thread pool.
The only addition: a failed Job whose pod was OOMKilled is followed by a new Job with twice the
memory (stock retries at the same memory inside the Job), so both sides run the same workload.
Client models are deserialised as stock does; creating and reading a Job is retried as stock's
`retry_on_api_exception` does (3 times, 1 s apart, not on 404). ZenML store calls are left out (not the API).

`python -m zenml_oom_orchestrator.bench.baseline --kubeconfig K --namespace NS --run-id R ...`
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from zenml_oom_orchestrator.bench import workload
from zenml_oom_orchestrator.bench.stamps import LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP

MI = 2**20
STOCK_POD_FAILURE_POLICY = {
    "rules": [
        {
            "action": "Count",
            "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [0]},
            # The python client (< 26) refuses to read a rule without it back.
            "onPodConditions": [],
        },
        # status "True" is what the real API server defaults (the local one does not).
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
}


@dataclass
class Node:
    name: str
    oom: bool
    seconds: float
    status: str = "ready"  # ready, starting, running, completed, failed
    attempt: int = 1
    memory_mib: int = 256
    job_name: str = ""


class PollingBaseline:
    def __init__(self, api_client: Any, args: argparse.Namespace) -> None:
        self.core = k8s.CoreV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.args = args
        self.ns = args.namespace
        self.nodes = [
            Node(
                workload.step_name(i),
                workload.is_oom_step(i, args.oom_fraction),
                seconds=workload.attempt_length(i, args.attempt_seconds, args.jitter),
            )
            for i in range(args.steps)
        ]
        self.pool = ThreadPoolExecutor(max_workers=10, thread_name_prefix="DagRunner-Startup")
        self.shutdown = threading.Event()
        self.lock = threading.Lock()

    def job_manifest(self, node: Node) -> dict[str, Any]:
        labels = {
            LABEL_RUN: self.args.run_id,
            LABEL_STEP: node.name,
            LABEL_ATTEMPT: str(node.attempt),
        }
        template = workload.pod_template(node.seconds, node.oom, self.args.sim)
        template["metadata"]["labels"] = labels
        memory = f"{node.memory_mib}Mi"
        main = template["spec"]["containers"][0]
        main["resources"] = {"requests": {"memory": memory}, "limits": {"memory": memory}}
        template["spec"]["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": node.job_name, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "podFailurePolicy": STOCK_POD_FAILURE_POLICY,
                "template": template,
            },
        }

    def start(self, node: Node) -> None:
        node.job_name = f"bl-{self.args.run_id}-{node.name}-a{node.attempt}"[:63]
        try:
            with_retries(self.batch.create_namespaced_job, self.ns, self.job_manifest(node))
            node.status = "running"
        except Exception as exc:  # noqa: BLE001 - as DagRunner: a failed start fails the node
            status = getattr(exc, "status", "")
            print(f"start {node.name}: {exc!r} {status}", file=sys.stderr)
            node.status = "failed"

    def check(self, node: Node) -> str:
        """Stock `kube_utils.check_job_status`: read the Job; Failed: list its pods; else list
        its Pending pods."""
        job = with_retries(self.batch.read_namespaced_job, node.job_name, self.ns)
        for cond in job.status.conditions or []:
            if cond.type == "Complete" and cond.status == "True":
                return "completed"
            if cond.type == "Failed" and cond.status == "True":
                pods = self.core.list_namespaced_pod(
                    self.ns, label_selector=f"job-name={node.job_name}"
                ).items
                if any(_oom_killed(p) for p in pods) and node.attempt < 4:
                    node.attempt += 1
                    node.memory_mib *= 2
                    return "ready"  # the main loop starts the escalated Job
                return "failed"
        self.core.list_namespaced_pod(
            self.ns,
            label_selector=f"job-name={node.job_name}",
            field_selector="status.phase=Pending",
        )
        return "running"

    def monitor(self) -> None:
        while not self.shutdown.is_set():
            started = time.time()
            for node in [n for n in self.nodes if n.status == "running"]:
                try:
                    node.status = self.check(node)
                except Exception as exc:  # noqa: BLE001 - as DagRunner: the node fails
                    print(f"check {node.name}: {exc}", file=sys.stderr)
                    node.status = "failed"
            spent = time.time() - started
            self.shutdown.wait(max(0.0, self.args.interval - spent))

    def run(self) -> dict[str, Any]:
        monitor = threading.Thread(target=self.monitor, name="DagRunner-Monitoring-Loop")
        monitor.start()
        limit = self.args.max_parallelism or len(self.nodes)
        while True:
            active = sum(1 for n in self.nodes if n.status in ("starting", "running"))
            for node in self.nodes:
                if active >= limit:
                    break
                if node.status == "ready":
                    node.status = "starting"
                    active += 1
                    self.pool.submit(self.start, node)
            if all(n.status in ("completed", "failed") for n in self.nodes):
                break
            time.sleep(0.5)
        self.shutdown.set()
        monitor.join()
        self.pool.shutdown()
        return {
            "completed": sum(n.status == "completed" for n in self.nodes),
            "failed": sum(n.status == "failed" for n in self.nodes),
            "attempts": sum(n.attempt for n in self.nodes),
        }


def with_retries(call: Any, *args: Any) -> Any:
    """Stock `kube_utils.retry_on_api_exception` around create_job/get_job: 3 retries, 1 s
    apart, on any ApiException but 404 (e.g. a 429 from API Priority and Fairness)."""
    for attempt in range(4):
        try:
            return call(*args)
        except ApiException as exc:
            if exc.status == 404 or attempt == 3:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _oom_killed(pod: Any) -> bool:
    for cs in pod.status.container_statuses or []:
        if cs.state and cs.state.terminated and cs.state.terminated.reason == "OOMKilled":
            return True
    return False


def _read_jobs_without_validation() -> None:
    """A real API server (1.35) leaves the Count rule's empty `onPodConditions` out of the Job it
    returns, and client < 26 then refuses to build the model (`on_pod_conditions` must not be
    None): every create and read of such a Job raises ValueError, stock ZenML's too. Models
    validate against a fresh `Configuration()`, so validation is switched off there; the models
    are still built, at the same cost."""
    init = k8s.Configuration.__init__

    def no_validation(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.client_side_validation = False

    k8s.Configuration.__init__ = no_validation  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.bench.baseline")
    workload.add_client_args(parser)
    parser.add_argument("--interval", type=float, default=3.0, help="job_monitoring_interval")
    parser.add_argument("--max-parallelism", type=int, default=None)
    parser.add_argument("--result")
    args = parser.parse_args(argv)
    _read_jobs_without_validation()
    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    result = PollingBaseline(api_client, args).run()
    if args.result:
        with open(args.result, "w") as f:
            json.dump(result, f)
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
