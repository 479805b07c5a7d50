"""CI smoke of the benchmark on a real control plane (`--cluster real-kwok --quick`): etcd,
kube-apiserver, kube-controller-manager and kube-scheduler from the real tier's build, KWOK
nodes. It asserts that every figure is produced (from the API server's own /metrics and audit
log, the processes' /proc), not that the targets are met (a shared CI machine cannot promise
timings). Needs the real tier's binaries and KWOK (.ci/run builds both first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_only(
    "needs the real tier's Kubernetes binaries (integration/realcluster/build.sh) and KWOK"
)


def test_bench_real_kwok_quick_produces_every_figure(tmp_path: Path) -> None:
    out_json = tmp_path / "real-kwok.json"
    proc = subprocess.run(
        [sys.executable, "-m", "zenml_oom_orchestrator.bench", "--cluster", "real-kwok"]
        + ["--quick", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]  # every run completed
    result = json.loads(out_json.read_text())
    single, concurrent = result["scenarios"]
    for scenario, attempts in ((single, 24), (concurrent, 18)):
        for client in ("ours", "baseline"):
            f = scenario[client]
            assert f["cluster"] == "real-kwok" and f["ok"], f
            assert f["attempts"] == attempts  # from the audit log's creates
            assert f["oom_retries_measured"] >= 1 and f["oom_to_next_p99"] > 0
            assert f["requests"] > 0 and f["server_requests"] > f["requests"]  # /metrics
            assert f["requests_by_verb"].get("post pods/binding", 0) >= attempts  # the scheduler
            assert f["cpu_seconds"]["kube-apiserver"] > 0 and f["cpu_seconds"]["etcd"] > 0
            assert f["step_minutes"] > 0 and f["peak_rss_mib"] > 0
    floor = single["floor"]
    assert floor["attempts"] == 24 and floor["control_plane_cpu_seconds"] > 0
    assert "apiserver+etcd CPU above the floor" in proc.stdout
    churn = result["churn"]
    assert churn["ok"] and churn["attempts"] == 120 and len(churn["rss_samples"]) >= 3
    assert "== targets" in proc.stdout
