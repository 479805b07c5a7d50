"""The subprocess entry reads a RunSpec as JSON (fast path) or YAML (fallback)."""

from __future__ import annotations

import json
from pathlib import Path

from zenml_oom_orchestrator.supervisor.__main__ import load_spec

STEP = {"name": "a", "pod_template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}


def test_json_and_yaml_specs_load_alike(tmp_path: Path) -> None:
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"run_id": "r", "steps": [STEP]}))
    as_yaml = tmp_path / "run.yaml"
    as_yaml.write_text(
        "run_id: r\nsteps:\n  - name: a\n    pod_template:\n      spec:\n"
        "        containers: [{name: main, image: x}]\n"
    )
    assert load_spec(str(as_json)) == load_spec(str(as_yaml))
