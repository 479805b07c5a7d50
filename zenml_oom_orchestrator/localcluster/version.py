"""The one Kubernetes version the local cluster claims, everywhere it says one (`/version`,
the node's kubeletVersion, the OpenAPI info): the kubelet it emulates (GUIDE: kubelet 1.35)."""

from __future__ import annotations

MAJOR, MINOR, PATCH = 1, 35, 0
GIT_VERSION = f"v{MAJOR}.{MINOR}.{PATCH}-zenml-oom-local"
