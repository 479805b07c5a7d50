"""A container's environment: env, envFrom, valueFrom (fieldRef, resourceFieldRef, secretKeyRef).

Errors raise `ConfigError`; the kubelet shows them as `CreateContainerConfigError`.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..validation import parse_quantity
from .podresources import container_resource

_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")

# name -> secret dict, or None when it does not exist
SecretGetter = Callable[[str], "Mapping[str, Any] | None"]


class ConfigError(RuntimeError):
    """The container's configuration cannot be resolved (missing secret or key, bad field)."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known vars are replaced, `$$` escapes, unknown stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(sub, value)


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    """The downward-API value of `fieldPath` for a pod."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": status.get("hostIP") or "127.0.0.1",
        "status.hostIPs": status.get("hostIP") or "127.0.0.1",
        "status.podIP": status.get("podIP") or "127.0.0.1",
        "status.podIPs": status.get("podIP") or "127.0.0.1",
    }
    if path not in simple:
        raise ConfigError(f'unsupported fieldPath "{path}"')
    return str(simple[path] or "")


def resource_field_ref(
    pod: Mapping[str, Any], container_name: str, ref: Mapping[str, Any], node: Mapping[str, str]
) -> str:
    """`resourceFieldRef`: a limit or request divided by `divisor` (limits default to the node)."""
    target = ref.get("containerName") or container_name
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    container = next((c for c in containers if c.get("name") == target), None)
    if container is None:
        raise ConfigError(f'container "{target}" not found for resourceFieldRef')
    kind, _, name = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or name not in ("memory", "cpu"):
        raise ConfigError(f'unsupported resource "{ref.get("resource")}"')
    value = container_resource(container, kind, name)
    if value is None:
        value = parse_quantity(node[name]) if kind == "limits" else parse_quantity(0)
    divisor = parse_quantity(ref.get("divisor") or 1)
    return str(math.ceil(value / divisor))


def _secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode("utf-8", "replace")
    string_data = secret.get("stringData") or {}
    return string_data.get(key)


def _secret_keys(secret: Mapping[str, Any]) -> list[str]:
    return sorted({*(secret.get("data") or {}), *(secret.get("stringData") or {})})


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    get_secret: SecretGetter,
    node_allocatable: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The full environment for a container: `base`, then envFrom, then env in order."""
    env: dict[str, str] = dict(base or {})
    env["HOSTNAME"] = str((pod.get("metadata") or {}).get("name", ""))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        ref = source.get("secretRef")
        if ref is None:
            raise ConfigError("envFrom supports secretRef only (no configmaps here)")
        secret = get_secret(ref.get("name", ""))
        if secret is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'secret "{ref.get("name")}" not found')
        for key in _secret_keys(secret):
            env[prefix + key] = _secret_value(secret, key) or ""
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        value = _value_from(pod, container, var["valueFrom"], get_secret, node_allocatable)
        if value is not None:
            env[name] = value
    return env


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    source: Mapping[str, Any],
    get_secret: SecretGetter,
    node_allocatable: Mapping[str, str],
) -> str | None:
    if "fieldRef" in source:
        return field_ref(pod, source["fieldRef"].get("fieldPath", ""))
    if "resourceFieldRef" in source:
        return resource_field_ref(
            pod, container.get("name", ""), source["resourceFieldRef"], node_allocatable
        )
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        secret = get_secret(ref.get("name", ""))
        if secret is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f'secret "{ref.get("name")}" not found')
        value = _secret_value(secret, ref.get("key", ""))
        if value is None and not ref.get("optional"):
            raise ConfigError(f"couldn't find key {ref.get('key')} in Secret {ref.get('name')}")
        return value
    raise ConfigError(f"unsupported valueFrom: {sorted(source)}")


def expand_argv(values: list[str] | None, env: Mapping[str, str]) -> list[str]:
    """command/args get the same `$(VAR)` expansion as env values."""
    return [expand(str(v), env) for v in values or []]
