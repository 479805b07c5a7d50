"""`GET pods/<name>/log`: container logs from the kubelet's `log_reader` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import BadRequest
from .routing import Route
from .streams import serve_log_follow

if TYPE_CHECKING:
    from .server import ApiServer, Handler

_TERMINAL = ("Succeeded", "Failed")


def serve_log(api: ApiServer, handler: Handler, route: Route, query: dict[str, str]) -> None:
    assert route.name is not None
    namespace, name = route.namespace or "default", route.name
    pod = api.store.get("pods", namespace, name)
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    containers += [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
    container = query.get("container")
    if not container:
        if len(containers) != 1:
            raise BadRequest(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(containers)}]"
            )
        container = containers[0]
    elif container not in containers:
        raise BadRequest(f"container {container} is not valid for pod {name}")
    previous = query.get("previous", "").lower() in ("true", "1")
    tail = query.get("tailLines")
    try:
        tail_lines = int(tail) if tail else None
    except ValueError:
        raise BadRequest(f"invalid tailLines: {tail!r}") from None

    def read() -> str:
        if api.log_reader is None:
            return ""
        return api.log_reader(namespace, name, container, previous, tail_lines)

    if query.get("follow", "").lower() in ("true", "1") and not previous:

        def finished() -> bool:
            try:
                phase = api.store.get("pods", namespace, name).get("status", {}).get("phase")
            except Exception:
                return True  # gone
            return phase in _TERMINAL

        serve_log_follow(api, handler, read, finished)
        return
    handler.send_bytes(200, read().encode(), "text/plain")
