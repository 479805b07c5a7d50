"""README claims that code can check: the `zenml-oom` command table (commands, options and their
defaults), the messages the Troubleshooting table tells you to look for, and that every
duration the README states says when it was measured. Durations themselves are measured on
the machine and written down with their date, never asserted here."""

from __future__ import annotations

import re
from pathlib import Path

import click

from zenml_oom_orchestrator.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PACKAGE = ROOT / "zenml_oom_orchestrator"


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _commands(group: click.Group, prefix: str = "zenml-oom") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= _commands(command, f"{prefix} {name}")
        else:
            found[f"{prefix} {name}"] = command
    return found


def _table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_every_command_is_in_the_table_with_its_real_options_and_defaults() -> None:
    usage = {row[0].strip("`"): row for row in _table_rows(_section("The `zenml-oom` command"))}
    for path, command in _commands(cli).items():
        rows = [u for u in usage if u == path or u.startswith(path + " ")]
        assert rows, f"`{path}` is not in the README's command table"
        options = {opt: p for p in command.params for opt in p.opts}
        for written in re.findall(r"(--?[a-z][a-z-]*)(?: ([^\]\s|]+))?", rows[0][len(path) :]):
            option, value = written
            assert option in options, f"README shows `{path} {option}`, which does not exist"
            param = options[option]
            if value and value.isupper():
                continue  # a placeholder such as FILE or RUN
            if value and getattr(param, "show_default", False) and option != "-o":
                assert str(param.default) == value, f"`{path} {option}` defaults to {param.default}"


def _source_pieces() -> str:
    """The package's text, with string literals split over lines joined again and every
    f-string field (`{...}`, `%s`) cut out, so each literal piece of a message stands alone."""
    text = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    text = re.sub(r"\"\s*\n\s*(?:\+\s*)?f?\"", "", text)
    return re.sub(r"\{[^{}\n]*\}|%s", "\x00", text)


def _said(fragment: str, source: str) -> bool:
    """Whether the code says `fragment`, whole or as a literal that ends in a field whose value
    is another literal (`f"... which is already {where}"` with `where = f"max_memory ..."`)."""
    if fragment in source:
        return True
    words = fragment.split(" ")
    for i in range(1, len(words)):
        head, tail = " ".join(words[:i]), " ".join(words[i:])
        if head + " \x00" in source and re.search(r"[\"\x00]" + re.escape(tail), source):
            return True
    return False


def test_troubleshooting_messages_are_what_the_code_says() -> None:
    source = _source_pieces()
    placeholder = re.compile(r"\b(?:X|Y|N|Ns|NAME)\b|'x'|'y'|\.\.\.|\b\d+s?\b")
    for row in _table_rows(_section("Troubleshooting")):
        for quoted in re.findall(r"`([^`]+)`", row[0]):
            for fragment in placeholder.split(quoted):
                fragment = fragment.strip(" ();'[]")
                if len(fragment) >= 8:
                    assert _said(fragment, source) or _is_zenmls(fragment), (
                        f"Troubleshooting quotes {fragment!r}, which no code says"
                    )


def _is_zenmls(fragment: str) -> bool:
    """A message ZenML itself prints (the table says which)."""
    import zenml

    stack_utils = Path(zenml.__file__).parent / "stack" / "utils.py"
    return fragment in stack_utils.read_text().replace('"\n            f"', "")


def test_every_stated_duration_says_when_it_was_measured() -> None:
    for match in re.finditer(r"(?:took|takes) [^.]*?\b\d+(?:\.\d+)? s\b[^.]*", README):
        sentence = README[match.start() : README.find(".\n", match.end()) + 1]
        assert re.search(r"20\d\d-\d\d-\d\d", sentence), f"no date for: {sentence!r}"
    assert "1.5 to 2 minutes" not in README and "~25 s" not in README
