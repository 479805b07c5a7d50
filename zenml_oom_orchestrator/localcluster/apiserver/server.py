"""The HTTP API server: stdlib ThreadingHTTPServer, one daemon thread per connection,
HTTP/1.1 keep-alive, JSON bodies and Kubernetes `Status` errors."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
)
from ..faults import DROP, ERROR, EXPIRE, FORBID, THROTTLE, FaultConfig, Faults
from ..resources import REVIEWS
from ..store import Store
from . import handlers
from .discovery import discovery_document
from .logs import serve_log
from .protobuf import decode_object
from .reviews import review
from .routing import Route, parse_resource_path
from .streams import OpenStream, serve_watch
from .tables import to_table, wants_table

LogReader = Callable[[str, str, str, bool, "int | None"], str]
_HEALTH = {"/healthz", "/livez", "/readyz"}


def _forbidden(verb: str, route: Route) -> Forbidden:
    """kube-apiserver's words for a request RBAC does not allow (a ServiceAccount's token)."""
    what = route.rt.plural if route.name is None else f'{route.rt.plural} "{route.name}"'
    where = f' in the namespace "{route.namespace}"' if route.namespace else " at the cluster scope"
    resource = route.rt.plural + (f"/{route.subresource}" if route.subresource else "")
    return Forbidden(
        f'{what} is forbidden: User "system:serviceaccount:{route.namespace or "default"}:'
        f'zenml-oom" cannot {verb} resource "{resource}" in API group "{route.rt.group}"{where}',
        name=route.name,
        group=route.rt.group,
        kind=route.rt.plural,
    )


class ApiServer:
    """`ApiServer(store).start()` serves the store on `self.url` until `stop()`.

    `faults` injects API faults (`server.faults.update(throttle_rate=0.1)`); `log_reader(
    namespace, pod, container, previous, tail_lines) -> str` serves `pods/log`;
    `request_counts[(verb, resource)]` counts requests, e.g. `("list", "pods")`."""

    def __init__(
        self,
        store: Store,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | FaultConfig | Mapping[str, Any] | None = None,
        log_reader: LogReader | None = None,
        bookmark_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        if isinstance(faults, Faults):
            self.faults = faults
        elif isinstance(faults, Mapping):
            self.faults = Faults(**faults)  # e.g. {"throttle_rate": 0.1}
        else:
            self.faults = Faults(faults)
        self.log_reader = log_reader
        self.bookmark_interval = bookmark_interval
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self.stopping = False
        self._count_lock = threading.Lock()
        self._streams: set[OpenStream] = set()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        httpd = _HTTPServer((self.host, self.port), Handler)
        httpd.api = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"apiserver:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end open watches and close the socket."""
        self.stopping = True
        for stream in list(self._streams):
            stream.end(expire=False)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Keep-alive connections would otherwise go on being served by their threads.
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd = None

    def expire_watches(self, trim_history: bool = True) -> int:
        """End every open watch with a 410 ERROR event (forced expiry); with `trim_history`
        resuming from their last resourceVersion fails too, so clients must re-list."""
        if trim_history:
            self.store.trim_history()
        streams = list(self._streams)
        for stream in streams:
            stream.end(expire=True)
        return len(streams)

    def count(self, verb: str, resource: str) -> None:
        with self._count_lock:
            self.request_counts[(verb, resource)] += 1

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of hundreds of clients connecting at once
    api: ApiServer


def _verb(method: str, route: Route, query: dict[str, str]) -> str:
    if method == "GET":
        if route.name is not None:
            return "get"
        return "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
    if method == "DELETE":
        return "delete" if route.name is not None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oom-local-apiserver"
    server: _HTTPServer
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's, untyped in typeshed

    def setup(self) -> None:
        super().setup()
        # Small responses must not wait for the client's delayed ACK (40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.api._connections.add(self.connection)

    def finish(self) -> None:
        self.server.api._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would dominate the hot path

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        api = self.server.api
        try:
            raw = self._read_raw()
            url = urlsplit(self.path)
            query = dict(parse_qsl(url.query, keep_blank_values=True))
            if query.get("dryRun") and method != "GET":
                # Better refused than silently applied.
                raise BadRequest("dryRun is not supported by the local cluster's API server")
            route = parse_resource_path(url.path)
            if route is None:
                self._non_resource(api, method, url.path)
                return
            body = self._decode_body(raw, route)
            verb = _verb(method, route, query)
            resource = route.rt.plural + (f"/{route.subresource}" if route.subresource else "")
            api.count(verb, resource)
            fault = api.faults.decide(verb, resource)
            if fault == FORBID:
                raise _forbidden(verb, route)
            if fault is not None and self._inject(fault, api):
                return
            self._dispatch(api, method, route, query, body, fault == EXPIRE)
        except ApiError as e:
            self.send_json(e.code, e.status(), e.retry_after_seconds)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug must not kill the connection thread silently
            err = InternalError(f"{type(e).__name__}: {e}")
            self.send_json(500, err.status())

    def _read_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _decode_body(self, raw: bytes, route: Route) -> Any:
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        if "protobuf" in ctype:
            # kubectl's generators and `auth can-i` send nothing else (no fallback to JSON).
            return decode_object(raw, route.rt.kind)
        if "cbor" in ctype:
            # JSON only; client-go then falls back to JSON for the rest of its requests.
            raise UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/vnd.kubernetes.protobuf (got {ctype})"
            )
        try:
            return json.loads(raw)
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}") from None

    def _inject(self, fault: str, api: ApiServer) -> bool:
        if fault == THROTTLE:
            secs = api.faults.config.retry_after_seconds
            err = ApiError(
                "Too many requests, please try again later.",
                code=429,
                reason="TooManyRequests",
                retry_after_seconds=secs,
            )
            self.send_json(429, err.status(), retry_after=secs)
        elif fault == ERROR:
            self.send_json(500, InternalError("injected fault: internal error").status())
        elif fault == DROP:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            return False  # EXPIRE is served by the watch itself
        return True

    def _non_resource(self, api: ApiServer, method: str, path: str) -> None:
        api.count("get", "discovery" if path not in _HEALTH else "health")
        if method != "GET":
            raise MethodNotAllowed(f"{method} is not supported on {path}")
        if path in _HEALTH:
            self.send_bytes(200, b"ok", "text/plain")
            return
        doc = discovery_document(path, f"{api.host}:{api.port}")
        if doc is None:
            raise NotFound(f"the server could not find the requested resource ({path})")
        self.send_json(200, doc)

    def _dispatch(
        self,
        api: ApiServer,
        method: str,
        route: Route,
        query: dict[str, str],
        body: Any,
        expire: bool,
    ) -> None:
        store = api.store
        if route.rt.plural in REVIEWS:
            if method != "POST":
                raise MethodNotAllowed(f"{route.rt.plural} supports create only")
            self.send_json(201, review(route.rt.kind, body))
            return
        if route.subresource == "log":
            if method != "GET":
                raise MethodNotAllowed("pods/log supports GET only")
            serve_log(api, self, route, query)
            return
        if route.subresource == "resize" and method in ("PUT", "PATCH"):
            assert route.name is not None
            ctype = self.headers.get("Content-Type", "")
            self.send_json(200, handlers.resize(store, route, method, body, ctype))
            return
        if method == "GET" and route.name is None:
            if query.get("watch", "").lower() in ("true", "1"):
                table = self._table()
                serve_watch(api, self, route, query, expire, table)
                return
            listed = handlers.list_objects(store, route, query)
            if self._table():
                listed = to_table(
                    route.rt.plural,
                    listed["items"],
                    listed["metadata"],
                    query.get("includeObject", ""),
                )
            self.send_json(200, listed)
        elif method == "GET":
            obj = handlers.get(store, route)
            if self._table():
                obj = to_table(
                    route.rt.plural,
                    [obj],
                    {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    query.get("includeObject", ""),
                )
            self.send_json(200, obj)
        elif method == "POST":
            self.send_json(201, handlers.create(store, route, body))
        elif method == "PUT" and route.name is not None:
            self.send_json(200, handlers.update(store, route, body))
        elif method == "PATCH" and route.name is not None:
            ctype = self.headers.get("Content-Type", "")
            self.send_json(200, handlers.patch(store, route, body, ctype))
        elif method == "DELETE" and route.name is not None:
            self.send_json(200, handlers.delete(store, route, query, body))
        elif method == "DELETE":
            self.send_json(200, handlers.delete_collection(store, route, query, body))
        else:
            raise MethodNotAllowed(f"{method} is not supported here")

    def _table(self) -> bool:
        return wants_table(self.headers.get("Accept", ""))

    def send_json(self, code: int, body: Any, retry_after: int | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_bytes(code, data, "application/json", retry_after)

    def send_bytes(
        self, code: int, data: bytes, content_type: str, retry_after: int | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        # Headers and body in one send: one syscall, one TCP segment for small bodies.
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()
