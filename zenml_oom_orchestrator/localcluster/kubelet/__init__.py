"""The local cluster's node agent: pods as real processes in memory cgroups."""

from .cgroups import CgroupBackend, CgroupV1, CgroupV2, NoCgroups
from .events import record_event
from .kubelet import Kubelet

__all__ = ["CgroupBackend", "CgroupV1", "CgroupV2", "Kubelet", "NoCgroups", "record_event"]
