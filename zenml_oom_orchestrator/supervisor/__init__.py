"""The attempt supervisor: runs a DAG of steps on Kubernetes, one attempt pod at a time per
step, classifying each finished attempt and asking the OOM policy what comes next.

Independent of ZenML: the flavor plugs in through `Observer` (see observer.py) and builds a
`RunSpec`. Facts flow one way: pod status → classify → decide → next attempt → outcome.
"""

from zenml_oom_orchestrator.supervisor.cluster import ApiRetry, ClusterApi
from zenml_oom_orchestrator.supervisor.observer import BaseObserver, Observer
from zenml_oom_orchestrator.supervisor.runner import Supervisor, SupervisorError, sweep_expired
from zenml_oom_orchestrator.supervisor.spec import (
    FailureMode,
    RunResult,
    RunSpec,
    RunStatus,
    StepResult,
    StepSpec,
    StepStatus,
)

__all__ = [
    "ApiRetry",
    "BaseObserver",
    "ClusterApi",
    "FailureMode",
    "Observer",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "StepResult",
    "StepSpec",
    "StepStatus",
    "Supervisor",
    "SupervisorError",
    "sweep_expired",
]
