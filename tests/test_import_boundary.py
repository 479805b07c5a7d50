"""The emulator (localcluster/) and the product import nothing from each other, so that one bug
cannot hide in both. Read from the source with `ast`, so a lazy import inside a function counts.

The CLI, the demo and the benchmarks drive both sides and may import either; supervisor/testing.py
spells out the local kubelet's simulation annotation instead of importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "zenml_oom_orchestrator"
EMULATOR = PACKAGE / "localcluster"
PRODUCT = [
    PACKAGE / name
    for name in ("supervisor", "policy", "orchestrators", "flavors", "classify.py", "outcome.py")
]


def _imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py")) if root.is_dir() else [root]


def test_the_emulator_imports_nothing_of_the_product() -> None:
    crossings = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in _sources(EMULATOR)
        for name in _imported_modules(path)
        if name.startswith("zenml_oom_orchestrator.")
        and not name.startswith("zenml_oom_orchestrator.localcluster")
    ]
    assert crossings == []


def test_the_product_imports_nothing_of_the_emulator() -> None:
    crossings = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for root in PRODUCT
        for path in _sources(root)
        for name in _imported_modules(path)
        if name.startswith("zenml_oom_orchestrator.localcluster")
    ]
    assert crossings == []


def test_the_check_resolves_relative_imports() -> None:
    """The resolver itself: the crossing that was mended (jobcontroller.py used the supervisor's
    queue) would be found, from any depth, and lazy imports count."""
    kubelet_module = EMULATOR / "kubelet" / "any.py"
    assert "zenml_oom_orchestrator.supervisor.workqueue" in _imported_modules(
        kubelet_module, "def f():\n    from ...supervisor.workqueue import WorkQueue\n"
    )
    assert "zenml_oom_orchestrator.supervisor.workqueue.WorkQueue" in _imported_modules(
        EMULATOR / "jobcontroller.py",
        "from ..supervisor import workqueue\nfrom ..supervisor.workqueue import WorkQueue\n",
    )
