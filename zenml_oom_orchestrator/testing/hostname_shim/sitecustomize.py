"""Make ``socket.gethostname()`` return the pod name in a local-cluster pod.

In a real pod the hostname is the pod name, and ZenML's stock Kubernetes orchestrator relies on
it to find its own Job. The local cluster runs pods as processes of this machine, which share
its hostname; the kubelet sets ``HOSTNAME`` to the pod name. Put this directory on the pod's
``PYTHONPATH`` to bridge the two (only the stock orchestrator pod needs it).
"""

import os
import socket

_pod_name = os.environ.get("HOSTNAME", "")


def _gethostname() -> str:
    return _pod_name


if _pod_name:
    socket.gethostname = _gethostname
