"""Issue 12 §6 through the ZenML flavor: a step that grows while it works is grown in place
and the store shows ONE completed step run whose metadata lists the growth. Real ZenML server,
on either cluster: the local one serves pods/resize and exec readiness probes as a kubelet 1.35
does; on the real tier the kubelet resizes the running container's memory cgroup."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from zenml_runs import run_oom

from zenml_oom_orchestrator import cli_runs
from zenml_oom_orchestrator.orchestrators.store_sync import HISTORY_KEY
from zenml_oom_orchestrator.testing.pipelines import growing

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]


def test_a_growing_step_completes_in_one_step_run_with_its_growth_in_metadata(
    oom_stack: str,
) -> None:
    # 550 MiB on top of ZenML's own ~135 MB: past 80 % of 512Mi, within 80 % of 1Gi.
    # grow_in_place: on by default, off on the test stack's component (see conftest.py).
    # At 50 MiB/s the step goes from 80 % of 512Mi to its limit in 2 s: checked every second
    # (the default 5 s catches only slower growth).
    settings = {"initial_memory": "512Mi", "grow_in_place": True, "grow_check_seconds": 1}
    outcome = run_oom(growing, settings, mib=550, mib_per_second=50)
    print("\n" + outcome.row())
    assert outcome.run.status.value == "completed"
    assert outcome.step_runs["grower"] == ["completed"]  # one step run: no retry
    (row,) = outcome.run.steps["grower"].run_metadata[HISTORY_KEY]
    assert (row["attempt"], row["outcome"], row["memory_limit"]) == (1, "succeeded", "1Gi")
    assert [(g["from"], g["to"], g["outcome"]) for g in row["growths"]] == [
        ("512Mi", "1Gi", "in_force")
    ]
    assert outcome.step_runs["report"] == ["completed"]
    # What `zenml-oom attempts` and `zenml-oom explain` show from the store.
    table = CliRunner().invoke(cli_runs.attempts, [outcome.run.name])
    assert "grower attempt 1 grew in place: 512Mi -> 1Gi (in force" in table.output
    said = CliRunner().invoke(cli_runs.explain, [outcome.run.name, "grower"])
    assert "Attempt 1 was grown in place 1 time while it ran, keeping its work" in said.output
