"""Kubeconfig files that point kubectl and the kubernetes client at the local cluster."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONTEXT = "oom-local"


def kubeconfig_dict(
    server_url: str, context: str = DEFAULT_CONTEXT, namespace: str = "default"
) -> dict[str, Any]:
    """The kubeconfig as data: one cluster, user and context, all named `context`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        # No credentials: the local API server does not authenticate.
        "users": [{"name": context, "user": {}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
    }


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    context: str = DEFAULT_CONTEXT,
    namespace: str = "default",
) -> Path:
    """Write the kubeconfig atomically (readers never see half a file); returns its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(kubeconfig_dict(server_url, context, namespace), sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=".kubeconfig-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
