"""What an orchestrator with ``local_cluster=True`` does differently, and why.

The local cluster (``zenml-oom cluster up``) runs each pod as a process on this machine with
this Python, and ignores the pod's image. So:

- no image is built or pushed: every step (and the pipeline) gets ``skip_build=True`` with
  its own ``parent_image`` (or a placeholder name), which also means the stack needs no image
  builder or container registry;
- no code is uploaded or downloaded: the pods import the pipeline's code from where it lies,
  the source root on this machine, put first on their ``PYTHONPATH``;
- a step pod stays in its working directory instead of ZenML's image directory ``/app``
  (:class:`LocalClusterStepEntrypointConfiguration`).

A user's pipeline therefore runs unchanged; settings it does give are kept where they matter.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from zenml.config import DockerSettings
from zenml.entrypoints.base_entrypoint_configuration import ENTRYPOINT_CONFIG_SOURCE_OPTION
from zenml.entrypoints.step_entrypoint_configuration import StepEntrypointConfiguration
from zenml.models import PipelineSnapshotBase

LOCAL_IMAGE = "local/zenml-oom:dev"  # a name only: the local cluster never pulls it
DOCKER_KEY = "docker"


def no_build_docker_settings(
    settings: DockerSettings | None = None, image: str = LOCAL_IMAGE
) -> DockerSettings:
    """``settings`` with the build and every code transfer off (see the module doc)."""
    base = settings or DockerSettings()
    return base.model_copy(
        update={
            "skip_build": True,
            "parent_image": base.parent_image or image,
            "allow_download_from_artifact_store": False,
            "allow_download_from_code_repository": False,
            "allow_including_files_in_images": False,
        }
    )


def _without_build(config: Any) -> Any:
    """A step or pipeline configuration (or its overrides) with no-build Docker settings."""
    current = config.settings.get(DOCKER_KEY)
    docker = (
        current
        if isinstance(current, DockerSettings)
        else DockerSettings.model_validate(current or {})
    )
    settings = {**config.settings, DOCKER_KEY: no_build_docker_settings(docker)}
    return config.model_copy(update={"settings": settings})


def skip_builds(snapshot: PipelineSnapshotBase) -> None:
    """Turn the snapshot's Docker settings into no-build ones, in place (idempotent)."""
    snapshot.pipeline_configuration = _without_build(snapshot.pipeline_configuration)
    for name, step in list(snapshot.step_configurations.items()):
        snapshot.step_configurations[name] = step.model_copy(
            update={
                "config": _without_build(step.config),
                "step_config_overrides": _without_build(step.step_config_overrides),
            }
        )


def code_path() -> str:
    """The ``PYTHONPATH`` that makes the pipeline's code importable in a pod here: ZenML's
    source root, then whatever this process's own ``PYTHONPATH`` added."""
    from zenml.utils import source_utils

    parts = [source_utils.get_source_root(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


class LocalClusterStepEntrypointConfiguration(StepEntrypointConfiguration):
    """ZenML's step entrypoint for pods of the local cluster.

    ZenML's ``prepare_code_environment`` makes and enters ``/app``, its images' working
    directory. A local-cluster pod is a process on this machine, so that would make ``/app`` on
    the host as root, and fails for a normal user (every step exited 1 with EACCES). Here the
    pod's own working directory plays that part; with no code to download (see
    :func:`no_build_docker_settings`) ZenML does nothing else there but put it on ``sys.path``.
    """

    @classmethod
    def get_entrypoint_arguments(cls, **kwargs: Any) -> list[str]:
        """ZenML's, naming this class by its full module path.

        ZenML names it relative to the source root of the process that makes the pod: in the
        orchestrator pod that is its main module's directory, ``.../orchestrators``, which gave
        ``local_cluster.LocalClusterStepEntrypointConfiguration``, not importable in the step
        pod (every step exited 1 with ``ModuleNotFoundError``).
        """
        arguments = super().get_entrypoint_arguments(**kwargs)
        source_at = arguments.index(f"--{ENTRYPOINT_CONFIG_SOURCE_OPTION}") + 1
        arguments[source_at] = f"{cls.__module__}.{cls.__qualname__}"
        return arguments

    def prepare_code_environment(self) -> None:
        """Like ZenML's, in the pod's working directory instead of ``/app``."""
        if self.should_download_code:
            super().prepare_code_environment()  # not a local_cluster snapshot: ZenML's way
            return
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
