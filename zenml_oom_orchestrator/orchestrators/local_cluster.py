"""What an orchestrator with ``local_cluster=True`` does differently, and why.

The local cluster (``zenml-oom cluster up``) runs each pod as a process on this machine with
this Python, and ignores the pod's image. So:

- no image is built or pushed: every step (and the pipeline) gets ``skip_build=True`` with
  its own ``parent_image`` (or a placeholder name), which also means the stack needs no image
  builder or container registry;
- no code is uploaded or downloaded: the pods import the pipeline's code from where it lies,
  the source root on this machine, put first on their ``PYTHONPATH``.

A user's pipeline therefore runs unchanged; settings it does give are kept where they matter.
"""

from __future__ import annotations

import os
from typing import Any

from zenml.config import DockerSettings
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
