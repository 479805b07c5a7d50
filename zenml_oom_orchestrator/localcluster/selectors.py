"""Kubernetes label and field selectors: parse once (cached), match many times."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from .errors import BadRequest

Matcher = Callable[[Any], bool]

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# One token: operators, parentheses, commas, or a run of anything else.
_TOKEN = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")


def valid_label_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))


def valid_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


_NO_LABELS: dict[str, str] = {}


def _always(_: Any) -> bool:
    return True


def _bad(selector: str, why: str) -> BadRequest:
    return BadRequest(f"unable to parse requirement: {why} (selector {selector!r})")


def _tokens(selector: str) -> list[str]:
    out: list[str] = []
    pos = 0
    s = selector.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise _bad(selector, f"unexpected character at {pos}")
        out.append(m.group(1))
        pos = m.end()
    return out


@lru_cache(maxsize=1024)
def label_matcher(selector: str | None) -> Matcher:
    """Compile a label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) into a predicate
    over a labels mapping. Raises `BadRequest` as the API server does for bad syntax."""
    if not selector or not selector.strip():
        return _always
    toks = _tokens(selector)
    reqs: list[Matcher] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise _bad(selector, "unexpected end")
        i += 1
        return toks[i - 1]

    def check_value(v: str) -> str:
        if not valid_label_value(v):
            raise _bad(selector, f"invalid label value {v!r}")
        return v

    while i < len(toks):
        tok = take()
        if tok == "!":
            key = take()
            if not valid_label_key(key):
                raise _bad(selector, f"invalid label key {key!r}")
            reqs.append(_absent(key))
        else:
            key = tok
            if not valid_label_key(key):
                raise _bad(selector, f"invalid label key {key!r}")
            op = toks[i] if i < len(toks) else ","
            if op == ",":
                reqs.append(_present(key))
            elif op in ("=", "==", "!="):
                i += 1
                value = check_value(take()) if i < len(toks) and toks[i] != "," else ""
                reqs.append(_label_in(key, frozenset([value]), op != "!="))
            elif op in ("in", "notin"):
                i += 1
                if take() != "(":
                    raise _bad(selector, "expected '('")
                values: set[str] = set()
                while True:
                    v = take()
                    if v == ")":
                        break
                    if v == ",":
                        continue
                    values.add(check_value(v))
                reqs.append(_label_in(key, frozenset(values), op == "in"))
            elif op in ("gt", "lt"):
                i += 1
                try:
                    bound = int(take())
                except ValueError:
                    raise _bad(selector, "gt/lt need an integer") from None
                reqs.append(_numeric(key, bound, op == "gt"))
            else:
                raise _bad(selector, f"unexpected {op!r} after {key!r}")
        if i < len(toks):
            if toks[i] != ",":
                raise _bad(selector, f"expected ',' got {toks[i]!r}")
            i += 1
    if len(reqs) == 1:
        return reqs[0]
    return lambda labels: all(r(labels) for r in reqs)


def _present(key: str) -> Matcher:
    return lambda labels: key in labels


def _absent(key: str) -> Matcher:
    return lambda labels: key not in labels


def _label_in(key: str, values: frozenset[str], inside: bool) -> Matcher:
    # `!=` and `notin` also match objects without the label, as in Kubernetes.
    return lambda labels: (labels.get(key) in values) == inside


def _field_is(path: tuple[str, ...], value: str, equal: bool) -> Matcher:
    return lambda obj: (_field_value(obj, path) == value) == equal


def _numeric(key: str, bound: int, greater: bool) -> Matcher:
    def match(labels: Mapping[str, str]) -> bool:
        try:
            n = int(labels[key])
        except (KeyError, ValueError):
            return False
        return n > bound if greater else n < bound

    return match


def _field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in s:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


@lru_cache(maxsize=1024)
def field_matcher(selector: str | None) -> Matcher:
    """Compile a field selector (`metadata.name=x,status.phase!=Failed`,
    `involvedObject.uid=...`) into a predicate over a whole object. Any dotted path works;
    missing fields compare as the empty string, as in the API server."""
    if not selector or not selector.strip():
        return _always
    reqs: list[Matcher] = []
    for term in _split_unescaped(selector, ","):
        term = term.strip()
        if not term:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-/]+)\s*(==|!=|=)\s*(.*)$", term)
        if not m:
            raise BadRequest(f"invalid selector: {selector!r}; can't understand {term!r}")
        path = tuple(m.group(1).split("."))
        value = m.group(3)
        reqs.append(_field_is(path, value, m.group(2) != "!="))
    if len(reqs) == 1:
        return reqs[0]
    return lambda obj: all(r(obj) for r in reqs)


def object_matcher(label_selector: str | None, field_selector: str | None) -> Matcher | None:
    """One predicate over whole objects for both selectors, or None when nothing filters."""
    lm = label_matcher(label_selector)
    fm = field_matcher(field_selector)
    if lm is _always and fm is _always:
        return None
    if fm is _always:
        return lambda o: lm(o["metadata"].get("labels") or _NO_LABELS)
    if lm is _always:
        return fm
    return lambda o: lm(o["metadata"].get("labels") or _NO_LABELS) and fm(o)
