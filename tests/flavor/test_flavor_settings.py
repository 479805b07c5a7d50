"""Settings: merged the ZenML way, stock settings intact, bad policies refused with clear words."""

from __future__ import annotations

from typing import Any

import pytest
from flavor_builders import compile_step, make_orchestrator, make_snapshot, step_template
from kubernetes.client import V1Toleration
from pydantic import ValidationError

from zenml_oom_orchestrator.flavors import (
    InvalidPolicyError,
    OOMKubernetesOrchestratorConfig,
    OOMKubernetesOrchestratorSettings,
)
from zenml_oom_orchestrator.orchestrators.oom_kubernetes_orchestrator import (
    OOMKubernetesOrchestrator,
)
from zenml_oom_orchestrator.supervisor import manifests


def test_step_overrides_pipeline_overrides_component_field_by_field(
    orchestrator: OOMKubernetesOrchestrator,
) -> None:
    # component: max_memory=8Gi, memory_multiplier=3
    step = compile_step(
        orchestrator,
        step_settings={"max_oom_retries": 5},
        pipeline_settings={"memory_multiplier": 1.5, "max_infrastructure_retries": 1},
    )
    policy = orchestrator.step_policy("train", step)
    assert policy.max_oom_retries == 5  # step
    assert policy.memory_multiplier == 1.5  # pipeline over component
    assert policy.max_infrastructure_retries == 1  # pipeline
    assert policy.max_memory == "8Gi"  # component
    assert policy.memory_increment == "256Mi"  # nobody: the policy's default


def test_component_defaults_apply_without_any_settings(
    orchestrator: OOMKubernetesOrchestrator,
) -> None:
    policy = orchestrator.step_policy("train", compile_step(orchestrator))
    assert (policy.max_memory, policy.memory_multiplier) == ("8Gi", 3.0)


@pytest.mark.parametrize(
    ("level", "expected"),
    [("step", {"train": False}), ("pipeline", {"train": False}), ("none", {"train": True})],
)
def test_learning_is_on_by_default_and_can_be_turned_off_per_step_or_pipeline(
    orchestrator: OOMKubernetesOrchestrator, level: str, expected: dict[str, bool]
) -> None:
    off = {"learn_start_memory": False}
    step = compile_step(
        orchestrator,
        step_settings=off if level == "step" else None,
        pipeline_settings=off if level == "pipeline" else None,
    )
    policy = orchestrator.step_policy("train", step)
    assert {"train": policy.learn_start_memory} == expected
    assert policy.learning_window == 10


def test_learning_can_be_turned_off_on_the_component() -> None:
    orchestrator = make_orchestrator(learn_start_memory=False, learning_window=3)
    policy = orchestrator.step_policy("train", compile_step(orchestrator))
    assert (policy.learn_start_memory, policy.learning_window) == (False, 3)
    # A step may turn it back on over the component's default.
    step = compile_step(orchestrator, step_settings={"learn_start_memory": True})
    assert orchestrator.step_policy("train", step).learn_start_memory is True


def test_stock_kubernetes_settings_still_work(orchestrator: OOMKubernetesOrchestrator) -> None:
    step = compile_step(
        orchestrator,
        step_settings={
            "max_memory": "4Gi",
            "pod_settings": {
                "node_selectors": {"pool": "big"},
                "env": [{"name": "A", "value": "1"}],
            },
            "privileged": True,
        },
        pipeline_settings={"max_parallelism": 2, "synchronous": False},
    )
    settings = orchestrator.get_settings(step)
    assert isinstance(settings, OOMKubernetesOrchestratorSettings)
    assert settings.pod_settings is not None
    assert settings.pod_settings.node_selectors == {"pool": "big"}
    assert settings.privileged is True
    assert settings.max_parallelism == 2
    assert settings.max_memory == "4Gi"


def test_pod_settings_tolerations_with_seconds_reach_every_attempt_pod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 §6: a user shortens how long a step's pod stays on a node that stopped
    reporting (the API server's default is 300 s) through pod_settings.tolerations; the
    taint manager then evicts it after that many seconds and the supervisor retries the step
    on the infrastructure budget (integration/realcluster/test_real_faults.py, on a real
    kubelet). Both spellings a user may write: the Kubernetes model and its JSON."""
    lost = [
        V1Toleration(
            key="node.kubernetes.io/unreachable",
            operator="Exists",
            effect="NoExecute",
            toleration_seconds=5,
        ),
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 5,
        },
    ]
    template = step_template(monkeypatch, {}, pod_settings={"tolerations": lost})
    pod = manifests.build_attempt_pod(
        template,
        name="p-train-a2",
        namespace="ns",
        run_id="run-1",
        step_name="train",
        attempt=2,
        memory_request=2**30,
        memory_limit=2**30,
        main_container="main",
        previous_outcome=None,
        previous_result=None,
        owner=None,
        started_at=0.0,
    )
    got = {(t["key"], t["effect"], t["tolerationSeconds"]) for t in pod["spec"]["tolerations"]}
    assert got == {
        ("node.kubernetes.io/unreachable", "NoExecute", 5),
        ("node.kubernetes.io/not-ready", "NoExecute", 5),
    }


def test_resource_settings_memory_is_accepted_as_the_start(
    orchestrator: OOMKubernetesOrchestrator,
) -> None:
    step = compile_step(orchestrator, resource_memory="2GiB")
    orchestrator.step_policy("train", step)  # no error: 2GiB is under the 8Gi cap


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("memory_multiplier", 0.5, "use 1"),
        ("max_oom_retries", -1, "use 0"),
        ("max_infrastructure_retries", -2, "use 0"),
        ("max_memory", "lots", "not a memory size"),
        ("memory_increment", "12 apples", "not a memory size"),
        ("pending_timeout_seconds", -5, "use 0"),
        ("sigkill_without_reason", "panic", "sigkill_without_reason"),
        ("learning_window", 0, "learn_start_memory=False"),
        ("learning_window", 500, "1 to 100"),
    ],
)
def test_invalid_value_refused_naming_field_value_and_fix(
    field: str, value: Any, hint: str
) -> None:
    for model in (OOMKubernetesOrchestratorSettings, OOMKubernetesOrchestratorConfig):
        with pytest.raises(ValidationError) as err:
            model(**{field: value})
        text = str(err.value)
        assert field in text and str(value) in text and hint in text


def test_cap_below_start_refused_when_both_are_set_on_one_level() -> None:
    with pytest.raises(ValidationError, match="initial_memory='8Gi' is above max_memory='4Gi'"):
        OOMKubernetesOrchestratorSettings(initial_memory="8Gi", max_memory="4Gi")


def test_misspelt_policy_setting_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="did you mean 'max_oom_retries'"):
        OOMKubernetesOrchestratorSettings(max_oom_retry=3)


def test_conflict_across_levels_is_refused_at_compile_naming_the_step() -> None:
    orchestrator = make_orchestrator(max_memory="4Gi")
    step = compile_step(orchestrator, name="trainer", step_settings={"initial_memory": "8Gi"})
    with pytest.raises(InvalidPolicyError) as err:
        orchestrator.get_docker_builds(make_snapshot({"trainer": step}))
    text = str(err.value)
    assert "step `trainer`" in text
    assert "initial_memory='8Gi'" in text and "max_memory='4Gi'" in text
    assert "raise max_memory" in text


def test_resource_settings_above_the_cap_is_refused_naming_the_step() -> None:
    orchestrator = make_orchestrator(max_memory="1Gi")
    step = compile_step(orchestrator, name="big", resource_memory="3GiB")
    with pytest.raises(InvalidPolicyError, match=r"step `big`.*ResourceSettings.*max_memory"):
        orchestrator.step_policy("big", step)


def test_memory_given_in_bytes_is_stored_readable() -> None:
    assert OOMKubernetesOrchestratorSettings(max_memory=3 * 2**30).max_memory == "3Gi"
