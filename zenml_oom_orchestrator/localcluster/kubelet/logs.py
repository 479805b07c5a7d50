"""Container logs: one file per process run, `<logs>/<pod-uid>/<container>/<run>.log`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BadRequest

# What kubelet 1.35 reads back from a failed container's log for FallbackToLogsOnError
# (MaxContainerTerminationMessageLogLines, MaxContainerTerminationMessageLogLength).
TERMINATION_LOG_LINES = 80
TERMINATION_LOG_BYTES = 2048


def termination_log_tail(path: Path) -> str:
    """The last 80 lines of a container's log file, at most their last 2048 bytes (a real
    kubelet cuts mid-line too); "" if the container wrote nothing."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - TERMINATION_LOG_BYTES))
            data = f.read()
    except FileNotFoundError:
        return ""
    lines = data.split(b"\n")  # the last item: an unterminated last line, or b""
    keep = TERMINATION_LOG_LINES + (1 if lines[-1] == b"" else 0)
    return b"\n".join(lines[-keep:]).decode(errors="replace")


def read_log(
    store: Any,
    logs_dir: Path,
    namespace: str,
    pod: str,
    container: str | None = None,
    previous: bool = False,
    tail_lines: int | None = None,
) -> str:
    """What `kubectl logs [--previous] [--tail N]` shows, with the API server's 400 messages."""
    obj = store.get("pods", namespace, pod)
    spec = obj.get("spec") or {}
    main = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    if container is None:
        if len(main) != 1:
            extra = f" or one of the init containers: [{' '.join(init)}]" if init else ""
            raise BadRequest(
                f"a container name must be specified for pod {pod}, choose one of: "
                f"[{' '.join(main)}]{extra}"
            )
        container = main[0]
    if container not in main + init:
        raise BadRequest(f"container {container} is not valid for pod {pod}")
    folder = logs_dir / obj["metadata"]["uid"] / container
    runs = sorted(int(p.stem) for p in folder.glob("*.log")) if folder.is_dir() else []
    if previous:
        if len(runs) < 2:
            raise BadRequest(
                f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        run = runs[-2]
    elif runs:
        run = runs[-1]  # a container waiting to restart shows its last run, as kubectl does
    else:
        status = obj.get("status") or {}
        statuses = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        state = next((s.get("state") for s in statuses if s.get("name") == container), None)
        reason = ((state or {}).get("waiting") or {}).get("reason", "ContainerCreating")
        raise BadRequest(f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
    text = (folder / f"{run}.log").read_text(errors="replace")
    if tail_lines is not None:
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
    return text
