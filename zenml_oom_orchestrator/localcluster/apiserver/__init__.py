"""The local cluster's HTTP API server (see docs/localcluster-design.md)."""

from .server import ApiServer

__all__ = ["ApiServer"]
