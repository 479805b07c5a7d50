"""README.md keeps its promises: the generated config table, the two-command quickstart, the
test command CI runs, and every command of the minikube scripts documented."""

from __future__ import annotations

import re
from pathlib import Path

from zenml_oom_orchestrator import docs_gen

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MINIKUBE = ROOT / "integration" / "minikube"


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _commands(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_config_table_matches_the_settings() -> None:
    assert docs_gen.render_readme(README) == README, (
        "README's configuration table is stale: run python -m zenml_oom_orchestrator.docs_gen"
    )
    assert "| `max_memory` |" in README and "| `kubernetes_context` | component |" in README


def test_quickstart_is_two_commands_and_the_second_is_what_ci_runs() -> None:
    demo, tests = _commands(_section("Quickstart"))
    assert demo.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'")
    assert demo.endswith("zenml-oom demo")
    assert tests == "bash scripts/test"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "bash scripts/test"


def test_run_the_tests_command_is_kept() -> None:
    (command,) = _commands(_section("Run the tests"))
    assert (
        command == "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && bash scripts/test"
    )


def _script_commands(text: str) -> set[str]:
    """The tools and subcommands a script runs, as a reader would look them up."""
    code = [line.split(" # ")[0] for line in text.splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(code)
    found = set()
    for sub in re.findall(
        r'\bminikube (?:--profile "\$MINIKUBE_PROFILE" )?([a-z]+(?: [a-z]+)?)', text
    ):
        found.add("minikube " + sub)
    for sub in re.findall(r"\bkctl ([a-z]+(?: [a-z]+)?)", text):
        found.add("kubectl " + sub)
    for sub in re.findall(r'"\$ZENML" ((?:[a-z][a-z-]*(?= |$) ?)+)', text):
        found.add("zenml " + sub.strip())
    for kind in re.findall(r'\bregister_or_exists "?([a-z][a-z -]*[a-z])"? ', text):
        found.add(f"zenml {kind} register")  # its describe is documented as `zenml <kind> describe`
    found |= set(re.findall(r"\b[a-z_]+\.py\b", text))
    found |= {f"python -m {m}" for m in re.findall(r"-m (zenml_oom_orchestrator[.\w]*)", text)}
    return found


def test_every_minikube_script_and_command_is_documented() -> None:
    guide = _section("minikube")
    for script in sorted(MINIKUBE.glob("*.sh")):
        assert script.name in guide, f"{script.name} is not in the README's minikube guide"
        for command in _script_commands(script.read_text()):
            assert command in guide, f"{script.name} runs `{command}`, not in the README"
    assert "cannot run minikube" in guide
    assert "rbac.yaml" in guide and "Dockerfile" in guide and "verify_run.py" in guide
