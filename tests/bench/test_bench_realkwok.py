"""The real-control-plane benchmark's pure parts: keys from attempt names, stamps from the API
server's audit log (as it grows, lines cut mid-way), its /metrics parsed, the combined table,
and the KWOK workload's sim.oom annotations (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.bench import workload
from zenml_oom_orchestrator.bench.audit import AuditStamps, key_of
from zenml_oom_orchestrator.bench.realkwok import parse_metrics
from zenml_oom_orchestrator.bench.stamps import Stamps
from zenml_oom_orchestrator.bench.table import render
from zenml_oom_orchestrator.supervisor.naming import attempt_name


def test_keys_come_from_the_namespace_and_each_clients_attempt_names() -> None:
    ours = attempt_name("ours-500", "step-00007", 2)
    assert key_of("bench-ours-500", ours) == ("ours-500", "step-00007", 2)
    assert key_of("bench-base-500", "bl-base-500-step-00007-a1") == ("base-500", "step-00007", 1)
    # the Job controller's pod: the Job's name and 5 random characters
    assert key_of("bench-base-500", "bl-base-500-step-00007-a1-x7k2p") == (
        "base-500",
        "step-00007",
        1,
    )
    assert key_of("default", ours) is None
    assert key_of("bench-ours-500", "something-else") is None


def _event(verb: str, resource: str, ns: str, name: str, t: str, **extra: Any) -> str:
    ref = {"resource": resource, "namespace": ns, "name": name, "apiVersion": "v1"}
    if resource == "pods" and verb == "patch":
        ref["subresource"] = "status"
    event = {
        "kind": "Event",
        "level": "Request" if verb == "patch" else "Metadata",
        "stage": "ResponseComplete",
        "verb": verb,
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": 201 if verb == "create" else 200},
        "requestReceivedTimestamp": t,
        "stageTimestamp": t,
        **extra,
    }
    return json.dumps(event, separators=(",", ":")) + "\n"


def _oom_patch(ns: str, name: str, t: str) -> str:
    terminated = {"exitCode": 137, "reason": "OOMKilled"}
    status = {"containerStatuses": [{"name": "main", "state": {"terminated": terminated}}]}
    return _event("patch", "pods", ns, name, t, requestObject={"status": status})


def _phase_patch(ns: str, name: str, t: str, phase: str) -> str:
    return _event("patch", "pods", ns, name, t, requestObject={"status": {"phase": phase}})


def _done_patch(ns: str, name: str, t: str) -> str:
    terminated = {"exitCode": 0, "reason": "Completed"}
    status = {"containerStatuses": [{"name": "main", "state": {"terminated": terminated}}]}
    return _event("patch", "pods", ns, name, t, requestObject={"status": status})


def test_audit_stamps_time_oom_to_next_attempt_with_the_servers_clock(tmp_path: Path) -> None:
    ns = "bench-ours-2"
    a1, a2 = attempt_name("ours-2", "step-00000", 1), attempt_name("ours-2", "step-00000", 2)
    lines = [
        _event("create", "pods", ns, a1, "2026-12-01T16:00:00.000000Z"),
        _phase_patch(ns, a1, "2026-12-01T16:00:00.100000Z", "Running"),  # not terminal
        _oom_patch(ns, a1, "2026-12-01T16:00:30.000000Z"),
        _phase_patch(ns, a1, "2026-12-01T16:00:30.700000Z", "Failed"),
        _event("create", "pods", ns, a2, "2026-12-01T16:00:30.042000Z"),
        _done_patch(ns, a2, "2026-12-01T16:01:00.500000Z"),  # ends the attempt
        _phase_patch(ns, a2, "2026-12-01T16:01:01.200000Z", "Succeeded"),
        # a refused create (409) is no attempt
        _event("create", "pods", ns, a2, "2026-12-01T16:00:31.000000Z").replace("201", "409"),
    ]
    log = tmp_path / "audit.log"
    stamps = Stamps()
    audit = AuditStamps(log, stamps)
    audit.poll()  # no file yet
    text = "".join(lines)
    cut = text.index("OOMKilled")  # the server is mid-way through writing a line
    log.write_text(text[:cut])
    audit.poll()
    assert stamps.attempts_created("ours-2") == 1 and not stamps.oom
    log.write_text(text)
    audit.poll()
    (latency,) = stamps.oom_to_next("ours-2", "pods")
    assert latency == pytest.approx(0.042, abs=1e-6)
    assert stamps.attempts_created("ours-2") == 2 and stamps.attempts_finished("ours-2") == 2
    assert stamps.step_minutes("ours-2") == pytest.approx(60.5 / 60)
    log.write_text(lines[0])  # rotated under the reader: say so rather than lose stamps
    with pytest.raises(RuntimeError, match="rotated"):
        audit.poll()


def test_the_baselines_next_attempt_is_its_next_job() -> None:
    stamps = Stamps()
    stamps.oom[("b", "step-00001", 1)] = 10.0
    stamps.created[("jobs", ("b", "step-00001", 2))] = 11.5
    stamps.created[("pods", ("b", "step-00001", 2))] = 12.0
    assert stamps.oom_to_next("b", "jobs") == [1.5]


def test_metrics_are_read_by_name_and_labels() -> None:
    text = "\n".join(
        [
            "# HELP apiserver_request_total Counter of apiserver requests",
            'apiserver_request_total{code="201",component="apiserver",dry_run="",group="",'
            'resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 12',
            'apiserver_request_total{code="200",component="",dry_run="",group="",resource="",'
            'scope="",subresource="/readyz",verb="GET",version=""} 3',
            'apiserver_request_total_other{resource="pods"} 99',
        ]
    )
    samples = parse_metrics(text, "apiserver_request_total")
    assert [(labels["resource"], labels["verb"], value) for labels, value in samples] == [
        ("pods", "POST", 12.0),
        ("", "GET", 3.0),
    ]


def test_kwok_pods_carry_the_sim_oom_contract_and_local_pods_the_simulate_script() -> None:
    kwok = workload.pod_template(30, True, "kwok")["metadata"]["annotations"]
    assert kwok == {"sim.oom/run-seconds": "30", "sim.oom/need-bytes": workload.NEEDS}
    assert workload.pod_template(1.5, False, "kwok")["metadata"]["annotations"] == {
        "sim.oom/run-seconds": "1.5"
    }
    (local,) = workload.pod_template(30, True)["metadata"]["annotations"].values()
    assert json.loads(local) == {"afterMs": 30000, "needsMemory": workload.NEEDS}


def _figures(client: str, cluster: str, requests: float, cpu: float) -> dict[str, Any]:
    return {
        "client": client,
        "cluster": cluster,
        "runs": 1,
        "steps": 500,
        "attempts": 600,
        "oom_to_next_p50": 0.02,
        "oom_to_next_p99": 0.05,
        "oom_retries_measured": 100,
        "requests": int(requests * 100),
        "requests_per_step_minute": requests,
        "control_plane_cpu_seconds": cpu * 100,
        "server_requests_per_step_minute": requests + 5,
        "control_plane_cpu_per_step_minute": cpu,
        "seconds": 70.0,
        "peak_rss_mib": 90.0,
    }


def test_table_puts_both_clusters_of_a_scenario_in_one_table_with_ratios() -> None:
    results = [
        {
            "machine": {"loadavg": [3.0], "loadavg_end": [4.0]},
            "scenarios": [
                {
                    "ours": _figures("supervisor", cluster, 1.0, 0.01),
                    "baseline": _figures("baseline", cluster, 40.0, 0.2),
                }
            ],
        }
        for cluster in ("local", "real-kwok")
    ]
    table = render(results)
    assert table.count("#### 500 steps in flight") == 1
    assert table.count("| ours / baseline |") == 2
    assert "| **0.025**, **0.025** | **0.133** | **0.050**, **0.050** |" in table
    assert "real-kwok (load 3.0→4.0)" in table


def test_table_shows_the_floor_and_each_clients_cpu_above_it() -> None:
    scenario = {
        "ours": _figures("supervisor", "real-kwok", 1.0, 0.30),  # 30 s of CPU
        "baseline": _figures("baseline", "real-kwok", 40.0, 1.20),  # 120 s
        "floor": _figures("floor", "real-kwok", 0.5, 0.20),  # the pods alone: 20 s
    }
    table = render([{"machine": {"loadavg": [1.0]}, "scenarios": [scenario]}])
    assert "| floor |" in table
    assert "| **0.100** (10.0 s / 100.0 s) |" in table  # (30 - 20) / (120 - 20)


def test_the_floor_creates_every_attempt_at_its_final_memory_under_attempt_names() -> None:
    import argparse

    from zenml_oom_orchestrator.bench.floor import pods

    args = argparse.Namespace(
        steps=10, run_id="floor-10", oom_fraction=0.2, attempt_seconds=30, jitter=0, sim="kwok"
    )
    made = pods(args)
    assert len(made) == 12  # every 5th step OOMs once: 1.2 attempts per step
    names = [p["metadata"]["name"] for p in made]
    assert names[:6] == [f"step-0000{i}-a1" for i in range(5)] + ["step-00004-a2"]
    assert all(key_of("bench-floor-10", n) is not None for n in names)  # the audit log keys
    limits = {
        p["metadata"]["name"]: p["spec"]["containers"][0]["resources"]["limits"]["memory"]
        for p in made
    }
    assert limits["step-00004-a1"] == "256Mi" and limits["step-00004-a2"] == "512Mi"
    assert made[4]["metadata"]["annotations"]["sim.oom/need-bytes"] == workload.NEEDS
