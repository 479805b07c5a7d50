"""The README's configuration reference, generated from the pydantic settings.

    python -m zenml_oom_orchestrator.docs_gen           # rewrite the table in README.md
    python -m zenml_oom_orchestrator.docs_gen --check   # exit 1 if README.md is out of date

The table sits between ``<!-- config-table:start -->`` and ``<!-- config-table:end -->``;
``tests/test_docs.py`` fails when it drifts from the code.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def _type(annotation: Any) -> str:
    """``typing.Optional[typing.Annotated[int, Gt(gt=0)]]`` -> ``int``: what a user writes."""
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    text = re.sub(r"\b(typing|zenml\.[\w.]+)\.", "", text)
    text = re.sub(r"Annotated\[(\w+), [^\]]*\]", r"\1", text)
    text = re.sub(r"Optional\[(.*)\]$", r"\1", text)
    text = re.sub(r"Literal\[(.*)\]", lambda m: m.group(1).replace(", ", " \\| "), text)
    return text.replace(" | None", "").replace("List[", "list[").replace("Dict[", "dict[")


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text is not None else ""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "`" + repr(field.default_factory()) + "`"  # type: ignore[call-arg]
    return "`" + repr(field.default) + "`" if field.default is not None else "unset"


def _rows(fields: dict[str, FieldInfo], where: dict[str, str] | None = None) -> list[str]:
    rows = []
    for name, field in fields.items():
        description = _cell(field.description)
        if description.startswith("DEPRECATED"):
            continue
        if where:  # ZenML's own texts: their first sentence is enough for a table
            description = description.split(". ")[0].rstrip(".") + "."
        kind = f" | {where[name]}" if where else ""
        rows.append(
            f"| `{name}`{kind} | {_type(field.annotation)} | {_default(field)} | {description} |"
        )
    return rows


def render_table() -> str:
    """The Markdown between the markers (without them)."""
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import (
        KubernetesOrchestratorSettings,
    )

    from .flavors import OOMKubernetesOrchestratorConfig, OOMKubernetesOrchestratorSettings
    from .policy import OOMPolicy

    ours = [
        n for n in OOMKubernetesOrchestratorSettings.model_fields if n in OOMPolicy.model_fields
    ]
    stock_settings = set(KubernetesOrchestratorSettings.model_fields)
    stock = {
        n: f
        for n, f in OOMKubernetesOrchestratorConfig.model_fields.items()
        if n not in OOMPolicy.model_fields
    }
    where = {n: "settings, component" if n in stock_settings else "component" for n in stock}
    lines = [
        "**OOM policy** (this plugin). Set per step, per pipeline or on the component; a step's",
        "value wins over the pipeline's, which wins over the component's; unset everywhere means",
        "the default below.",
        "",
        "| Setting | Type | Default | Meaning |",
        "| --- | --- | --- | --- |",
        *_rows({n: OOMPolicy.model_fields[n] for n in ours}),
        "",
        "**Inherited from ZenML's Kubernetes orchestrator** (descriptions shortened from ZenML's",
        "own). `settings` fields can be set per step, per pipeline and on the component;",
        "`component` fields only on the component (`zenml orchestrator register/update`).",
        "",
        "| Setting | Where | Type | Default | Meaning |",
        "| --- | --- | --- | --- | --- |",
        *_rows(stock, where),
    ]
    return "\n".join(lines)


def render_readme(text: str) -> str:
    """``text`` with the table between the markers replaced by :func:`render_table`."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"README has no {START} ... {END} markers")
    return pattern.sub(lambda _: f"{START}\n{render_table()}\n{END}", text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the README's configuration table.")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    rendered = render_readme(current)
    if args.check:
        if rendered != current:
            print(f"{args.readme} is out of date: run python -m zenml_oom_orchestrator.docs_gen")
            return 1
        return 0
    args.readme.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
