"""Issue 7 §2: bad settings are refused up front. Each case is a run of two steps, one of them
misconfigured, handed to the supervisor's entry point (`python -m ...supervisor`, called in
process): it exits 3 with an error that names the field and the value, and the cluster sees
no request at all, so nothing starts, not even the valid step.

(The policy model's own validation is unit-tested in tests/test_policy.py and, through the
ZenML settings, in tests/flavor/test_flavor_settings.py; this is the run-level path.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import sim, step

from zenml_oom_orchestrator.supervisor.__main__ import main as supervisor_main

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.local_only("proves no request reached the local API server by its counters"),
]

CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    # (id, step overrides, run overrides, words the error must contain)
    (
        "bad-initial-quantity",
        {"policy": {"initial_memory": "12 apples"}},
        {},
        ["initial_memory", "12 apples"],
    ),
    ("bad-cap-quantity", {"policy": {"max_memory": "1.5.5Gi"}}, {}, ["max_memory", "1.5.5Gi"]),
    (
        "negative-increment",
        {"policy": {"memory_increment": "-5Mi"}},
        {},
        ["memory_increment", "negative"],
    ),
    ("bad-resource-memory", {"resource_memory": "lots"}, {}, ["resource_memory", "lots"]),
    (
        "multiplier-below-1",
        {"policy": {"memory_multiplier": 0.5}},
        {},
        ["memory_multiplier", "0.5"],
    ),
    (
        "cap-below-start",
        {"policy": {"initial_memory": "2Gi", "max_memory": "1Gi"}},
        {},
        ["initial_memory='2Gi'", "max_memory='1Gi'"],
    ),
    (
        "cap-below-resource-memory",
        {"resource_memory": "3GiB", "policy": {"initial_memory": None, "max_memory": "1Gi"}},
        {},
        ["max_memory='1Gi'", "3GiB"],
    ),
    (
        "negative-oom-budget",
        {"policy": {"max_oom_retries": -1}},
        {},
        ["max_oom_retries=-1", "negative"],
    ),
    (
        "negative-infra-budget",
        {"policy": {"max_infrastructure_retries": -3}},
        {},
        ["max_infrastructure_retries=-3"],
    ),
    (
        "negative-pending-timeout",
        {"policy": {"pending_timeout_seconds": -1}},
        {},
        ["pending_timeout_seconds=-1"],
    ),
    (
        "unknown-policy-key",
        {"policy": {"max_oom_retry": 3}},
        {},
        ["max_oom_retry", "did you mean 'max_oom_retries'"],
    ),
    (
        "unknown-step-key",
        {"upstreams": ["ok"]},
        {},
        ["upstreams", "Extra inputs are not permitted"],
    ),
    (
        "unknown-run-key",
        {},
        {"max_paralelism": 2},
        ["max_paralelism", "Extra inputs are not permitted"],
    ),
    (
        "zero-parallelism",
        {},
        {"max_parallelism": 0},
        ["max_parallelism", "greater than or equal to 1"],
    ),
]


@pytest.mark.parametrize(
    ("step_over", "run_over", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_setting_is_refused_naming_the_field_and_nothing_starts(
    local_cluster: Any,
    cluster_namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    step_over: dict[str, Any],
    run_over: dict[str, Any],
    words: list[str],
) -> None:
    bad = step("bad", sim(0.1))
    bad.update({k: v for k, v in step_over.items() if k != "policy"})
    bad["policy"] = {**bad["policy"], **step_over.get("policy", {})}
    spec = {"run_id": "bad", "namespace": cluster_namespace, "steps": [step("ok", sim(0.1)), bad]}
    spec.update(run_over)
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(spec))
    server = local_cluster.api_server
    before = Counter(server.request_counts)

    code = supervisor_main(
        ["--spec", str(spec_file), "--kubeconfig", str(local_cluster.kubeconfig_path)]
    )

    err = capsys.readouterr().err
    assert code == 3
    assert "invalid run spec" in err and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert Counter(server.request_counts) - before == Counter()  # not one API request
    pods, _ = local_cluster.store.list("pods", cluster_namespace)
    assert pods == []
