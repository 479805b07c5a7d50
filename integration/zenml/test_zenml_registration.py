"""`zenml orchestrator flavor register` / `register` / `update`, exactly as documented, against a
real local ZenML server; a policy that cannot work is refused with the field, value and fix."""

from __future__ import annotations

import pytest
from zenml.client import Client
from zenml.enums import StackComponentType

from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer

pytestmark = [
    pytest.mark.zenml,
    pytest.mark.local_only("uses no cluster (ZenML's CLI against a server): run once"),
]

BASE = ["--kubernetes_context=oom-local", "--local=True", "--skip_local_validations=True"]


def _output(result: object) -> str:
    return f"{getattr(result, 'stdout', '')}{getattr(result, 'stderr', '')}"


def test_flavor_is_listed_after_registration(
    zenml_server: LocalZenServer, flavor_registered: str
) -> None:
    assert "oom_kubernetes" in _output(zenml_server.cli("orchestrator", "flavor", "list"))


def test_register_and_update_with_policy_defaults(
    zenml_server: LocalZenServer, flavor_registered: str
) -> None:
    zenml_server.cli(
        "orchestrator", "register", "oom-defaults", "--flavor=oom_kubernetes", *BASE,
        "--max_memory=4Gi", "--memory_multiplier=1.5",
    )  # fmt: skip
    zenml_server.cli("orchestrator", "update", "oom-defaults", "--max_oom_retries=5")
    component = Client().get_stack_component(StackComponentType.ORCHESTRATOR, "oom-defaults")
    config = component.configuration
    assert (config["max_memory"], config["memory_multiplier"]) == ("4Gi", 1.5)
    assert config["max_oom_retries"] == 5


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--memory_multiplier=0.5"], ["memory_multiplier=0.5", "use 1"]),
        (["--max_memory=lots"], ["max_memory='lots'", "not a memory size"]),
        (
            ["--initial_memory=8Gi", "--max_memory=4Gi"],
            ["initial_memory='8Gi'", "raise max_memory"],
        ),
        # ZenML checks component keys before the flavor sees them, so no "did you mean" here
        # (README, Troubleshooting); the policy settings in Python and YAML do suggest.
        (["--max_memry=4Gi"], ["Invalid configuration keys ['max_memry']"]),
        (["--memory_multiplier=nan"], ["memory_multiplier=nan is not a number"]),
        (["--initial_memory=100m"], ["'100m' is a fraction of a byte", "'100Mi'"]),
    ],
    ids=["multiplier", "quantity", "start-above-cap", "misspelt", "nan", "fraction"],
)
def test_register_refuses_a_policy_that_cannot_work(
    zenml_server: LocalZenServer, flavor_registered: str, args: list[str], expected: list[str]
) -> None:
    result = zenml_server.cli(
        "orchestrator", "register", "oom-bad", "--flavor=oom_kubernetes", *BASE, *args,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    for text in expected:
        assert text in _output(result)


def test_update_refuses_a_value_that_conflicts_with_the_stored_ones(
    zenml_server: LocalZenServer, flavor_registered: str
) -> None:
    zenml_server.cli(
        "orchestrator", "register", "oom-capped", "--flavor=oom_kubernetes", *BASE,
        "--max_memory=2Gi",
    )  # fmt: skip
    result = zenml_server.cli(
        "orchestrator", "update", "oom-capped", "--initial_memory=3Gi", check=False
    )
    assert result.returncode != 0
    assert "initial_memory='3Gi' is above max_memory='2Gi'" in _output(result)
