"""What the real API server refuses (422 Invalid) in the fields the local cluster uses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .errors import Invalid
from .resources import ResourceType, resource_type
from .selectors import valid_label_key, valid_label_value

_SUBDOMAIN_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_RE = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(f"^{_SUBDOMAIN_RE}$")
_DNS_LABEL = re.compile(f"^{_LABEL_RE}$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    f"used for validation is '{_SUBDOMAIN_RE}')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_LABEL_RE}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
LABEL_KEY_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), with an optional "
    "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
QUANTITY_MSG = "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


def parse_quantity(value: Any) -> Fraction:
    """Exact value of a Kubernetes quantity ("256Mi", "0.5", "100m", "1e3"); ValueError if bad."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Fraction(value)
    m = _QUANTITY.match(str(value))
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def dns_subdomain_errors(name: str) -> list[str]:
    errs = []
    if len(name) > 253:
        errs.append("must be no more than 253 characters")
    if not _SUBDOMAIN.match(name):
        errs.append(SUBDOMAIN_MSG)
    return errs


def dns_label_errors(name: str) -> list[str]:
    errs = []
    if len(name) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS_LABEL.match(name):
        errs.append(LABEL_MSG)
    return errs


def segment_errors(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in name]


NAME_RULES = {
    "subdomain": dns_subdomain_errors,
    "label": dns_label_errors,
    "segment": segment_errors,
}


class _Errors:
    """Collects field errors; renders them the way the API server words them."""

    def __init__(self) -> None:
        self.causes: list[dict[str, str]] = []

    def invalid(self, field: str, value: Any, detail: str) -> None:
        shown = value if isinstance(value, int | float) else f'"{value}"'
        msg = f"Invalid value: {shown}: {detail}"
        self.causes.append({"reason": "FieldValueInvalid", "message": msg, "field": field})

    def required(self, field: str) -> None:
        self.causes.append(
            {"reason": "FieldValueRequired", "message": "Required value", "field": field}
        )

    def unsupported(self, field: str, value: Any, allowed: list[str]) -> None:
        msg = f'Unsupported value: "{value}": supported values: ' + ", ".join(
            f'"{a}"' for a in allowed
        )
        self.causes.append({"reason": "FieldValueNotSupported", "message": msg, "field": field})

    def raise_if_any(self, rt: ResourceType, name: str) -> None:
        if not self.causes:
            return
        parts = [f"{c['field']}: {c['message']}" for c in self.causes]
        joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        raise Invalid(
            f'{rt.kind} "{name}" is invalid: {joined}',
            name=name,
            group=rt.group,
            kind=rt.kind,
            causes=self.causes,
        )


def _check_labels(errs: _Errors, labels: Any, field: str) -> None:
    if labels is None:
        return
    if not isinstance(labels, Mapping):
        errs.invalid(field, labels, "must be a map of strings")
        return
    for key, value in labels.items():
        if not valid_label_key(str(key)):
            errs.invalid(field, key, LABEL_KEY_MSG)
        if not isinstance(value, str):
            errs.invalid(f"{field}", value, "label values must be strings")
        elif len(value) > 63:
            errs.invalid(field, value, "must be no more than 63 characters")
        elif not valid_label_value(value):
            errs.invalid(field, value, LABEL_VALUE_MSG)


def _check_metadata(errs: _Errors, rt: ResourceType, meta: Mapping[str, Any]) -> None:
    name = meta.get("name")
    if not name:
        errs.required("metadata.name")
    else:
        for detail in NAME_RULES[rt.name_rule](str(name)):
            errs.invalid("metadata.name", name, detail)
    _check_labels(errs, meta.get("labels"), "metadata.labels")
    for key in meta.get("annotations") or {}:
        if not valid_label_key(str(key)):
            errs.invalid("metadata.annotations", key, LABEL_KEY_MSG)


def _check_resources(errs: _Errors, res: Mapping[str, Any], field: str) -> None:
    parsed: dict[str, dict[str, Fraction]] = {}
    for kind in ("limits", "requests"):
        for rname, value in (res.get(kind) or {}).items():
            f = f"{field}.{kind}[{rname}]"
            try:
                q = parse_quantity(value)
            except ValueError:
                errs.invalid(f, value, QUANTITY_MSG)
                continue
            if q < 0:
                errs.invalid(f, value, "must be greater than or equal to 0")
            parsed.setdefault(kind, {})[rname] = q
    limits, requests = parsed.get("limits", {}), parsed.get("requests", {})
    for rname, req in requests.items():
        if rname in limits and req > limits[rname]:
            errs.invalid(
                f"{field}.requests",
                str(res["requests"][rname]),
                f"must be less than or equal to {rname} limit of {res['limits'][rname]}",
            )


def check_pod_spec(errs: _Errors, spec: Any, field: str, restart_policies: list[str]) -> None:
    if not isinstance(spec, Mapping):
        errs.required(field)
        return
    containers = spec.get("containers") or []
    if not containers:
        errs.required(f"{field}.containers")
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            cf = f"{field}.{group}[{i}]"
            cname = c.get("name")
            if not cname:
                errs.required(f"{cf}.name")
            else:
                for detail in dns_label_errors(str(cname)):
                    errs.invalid(f"{cf}.name", cname, detail)
                if cname in seen:
                    errs.causes.append(
                        {
                            "reason": "FieldValueDuplicate",
                            "message": f'Duplicate value: "{cname}"',
                            "field": f"{cf}.name",
                        }
                    )
                seen.add(cname)
            if not c.get("image"):
                errs.required(f"{cf}.image")
            for j, env in enumerate(c.get("env") or []):
                if not _ENV_NAME.match(str(env.get("name", ""))):
                    errs.invalid(
                        f"{cf}.env[{j}].name",
                        env.get("name", ""),
                        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
                    )
            _check_resources(errs, c.get("resources") or {}, f"{cf}.resources")
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in restart_policies:
        errs.unsupported(f"{field}.restartPolicy", policy, restart_policies)


def validate(rt: ResourceType, obj: Mapping[str, Any]) -> None:
    """Raise `Invalid` (with one cause per bad field) if the API server would refuse `obj`."""
    errs = _Errors()
    meta = obj.get("metadata") or {}
    _check_metadata(errs, rt, meta)
    if rt.plural == "pods":
        check_pod_spec(errs, obj.get("spec"), "spec", ["Always", "OnFailure", "Never"])
    elif rt.plural == "jobs":
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        _check_labels(
            errs, (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
        )
        check_pod_spec(errs, template.get("spec"), "spec.template.spec", ["OnFailure", "Never"])
        for key in (
            "backoffLimit",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
            "completions",
            "parallelism",
        ):
            v = spec.get(key)
            if v is not None and (not isinstance(v, int) or v < 0):
                errs.invalid(f"spec.{key}", v, "must be greater than or equal to 0")
    errs.raise_if_any(rt, str(meta.get("name") or meta.get("generateName") or ""))


POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be "
    "set to 1 if it was previously negative)"
)


def _spec_without_mutable(spec: Any) -> dict[str, Any]:
    out = dict(spec) if isinstance(spec, Mapping) else {}
    for key in ("activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations"):
        out.pop(key, None)
    for group in ("containers", "initContainers"):
        if out.get(group):
            out[group] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, Mapping) else c
                for c in out[group]
            ]
    return out


def validate_pod_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """A pod's spec is immutable but for images, deadlines, tolerations added and its binding
    (`nodeName` set once); resources change only through `pods/resize` (kube-apiserver 1.35's
    refusal, without its field diff)."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec == new_spec:
        return
    before, after = _spec_without_mutable(old_spec), _spec_without_mutable(new_spec)
    if not before.get("nodeName"):
        before.pop("nodeName", None)
        after.pop("nodeName", None)
    old_tolerations = old_spec.get("tolerations") or []
    added_only = all(t in (new_spec.get("tolerations") or []) for t in old_tolerations)
    if before == after and added_only:
        return
    errs = _Errors()
    errs.causes.append(
        {
            "reason": "FieldValueForbidden",
            "message": f"Forbidden: {POD_UPDATE_FORBIDDEN}",
            "field": "spec",
        }
    )
    errs.raise_if_any(resource_type("pods"), str((new.get("metadata") or {}).get("name") or ""))
