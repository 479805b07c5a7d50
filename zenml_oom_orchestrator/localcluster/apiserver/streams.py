"""Long-running responses: watch event streams and followed logs, both chunked."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ApiError, BadRequest, Expired
from ..watch import BOOKMARK, ERROR, encode_event
from .routing import Route
from .tables import to_table

if TYPE_CHECKING:
    from .server import ApiServer, Handler

# How often an idle stream checks whether its client went away or the server is stopping.
IDLE_CHECK_SECONDS = 1.0
MAX_BATCH = 64  # events written in one chunk when a watcher is behind
# After the first event, wait this long for more to write them in one chunk: under load a
# hundred watchers then wake a few hundred times a second instead of once per event each.
COALESCE_SECONDS = 0.02


class StreamGone(Exception):
    """The client closed the connection."""


def client_gone(sock: socket.socket) -> bool:
    """True if the peer closed the connection (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class OpenStream:
    """A watch being served; the server can make it end with a 410 (forced expiry)."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch
        self.expire = threading.Event()
        self.stop = threading.Event()

    def end(self, expire: bool) -> None:
        (self.expire if expire else self.stop).set()
        self.watch.wake()


def _chunk(handler: Handler, data: bytes) -> None:
    try:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    except OSError as e:
        raise StreamGone() from e


def _start_chunked(handler: Handler, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("Cache-Control", "no-cache, private")
    handler.end_headers()


def _end_chunked(handler: Handler) -> None:
    try:
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:
        handler.close_connection = True


def _expired_line(message: str) -> bytes:
    return encode_event(ERROR, Expired(message).status())


def serve_watch(
    api: ApiServer,
    handler: Handler,
    route: Route,
    query: dict[str, str],
    force_expire: bool,
    table: bool = False,
) -> None:
    """Stream `{"type", "object"}` lines until timeoutSeconds, client close or server stop.
    A too-old resourceVersion gives one ERROR event with a 410 Status, as the real server."""
    timeout = None
    if query.get("timeoutSeconds"):
        try:
            timeout = float(query["timeoutSeconds"])
        except ValueError:
            raise BadRequest("invalid timeoutSeconds") from None
    bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
    try:
        if force_expire:
            raise Expired("too old resource version: forced expiry (fault injection)")
        w = api.store.watch(
            route.rt.plural,
            route.namespace,
            resource_version=query.get("resourceVersion"),
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            timeout=timeout,
            bookmark_interval=api.bookmark_interval if bookmarks else None,
        )
    except Expired as e:
        _start_chunked(handler, "application/json")
        _chunk(handler, _expired_line(e.message))
        _end_chunked(handler)
        return
    stream = OpenStream(w)
    api._streams.add(stream)
    _start_chunked(handler, "application/json")
    try:
        encode = _table_encoder(route.rt.plural, query) if table else None
        _pump(handler, w, stream, encode)
        _end_chunked(handler)
    except StreamGone:
        handler.close_connection = True
    finally:
        w.stop()
        api._streams.discard(stream)


def _table_encoder(resource: str, query: dict[str, str]) -> Callable[[str, Any], bytes]:
    include = query.get("includeObject", "")

    def encode(type_: str, obj: Any) -> bytes:
        if type_ in (BOOKMARK, ERROR):
            return encode_event(type_, obj)
        rv = obj["metadata"]["resourceVersion"]
        return encode_event(type_, to_table(resource, [obj], {"resourceVersion": rv}, include))

    return encode


def _pump(
    handler: Handler, w: Any, stream: OpenStream, encode: Callable[[str, Any], bytes] | None
) -> None:
    idle_since = time.monotonic()
    while True:
        if stream.expire.is_set():
            _chunk(handler, _expired_line("too old resource version: forced expiry"))
            return
        if stream.stop.is_set():
            return
        try:
            got = w.next_shared(IDLE_CHECK_SECONDS)
        except StopIteration:
            return
        if got is None:
            if time.monotonic() - idle_since >= IDLE_CHECK_SECONDS and client_gone(
                handler.connection
            ):
                raise StreamGone()
            continue
        idle_since = time.monotonic()
        lines: list[bytes] = []
        time.sleep(COALESCE_SECONDS)
        while got is not None:
            type_, obj, ev = got
            if encode is not None:
                lines.append(encode(type_, obj))
            elif ev is not None:
                lines.append(ev.json_line())  # encoded once for all watchers
            else:
                lines.append(encode_event(type_, obj))
            if len(lines) >= MAX_BATCH:
                break  # checked before reading the next event, so none is read and dropped
            try:
                got = w.next_shared(0)
            except StopIteration:
                _chunk(handler, b"".join(lines))
                return
        _chunk(handler, b"".join(lines))


def serve_log_follow(
    api: ApiServer,
    handler: Handler,
    read: Callable[[], str],
    finished: Callable[[], bool],
    poll_seconds: float = 0.2,
) -> None:
    """Send the log, then what is appended, until the container ends or the client goes."""
    _start_chunked(handler, "text/plain")
    sent = 0
    try:
        while True:
            done = finished()  # checked before reading so the last lines are not lost
            try:
                text = read()
            except ApiError:
                text = ""
            if len(text) < sent:
                sent = 0  # a restarted container starts a new log
            if len(text) > sent:
                _chunk(handler, text[sent:].encode())
                sent = len(text)
            if done or api.stopping or client_gone(handler.connection):
                break
            time.sleep(poll_seconds)
        _end_chunked(handler)
    except StreamGone:
        handler.close_connection = True
