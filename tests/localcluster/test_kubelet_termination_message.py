"""terminated.message as kubelet 1.35 writes it, from terminationMessagePolicy.

Each case's command was run on the real tier (kubelet 1.35.4, containerd 2.2, 2026-12-01) and
the expected message is what that kubelet wrote: under FallbackToLogsOnError a failed
container gets the last 80 lines of its log, at most their last 2048 bytes (cut mid-line),
stdout and stderr as written; nothing for exit 0, for the default File policy, or added to a
StartError (there is no log).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zenml_oom_orchestrator.localcluster.kubelet import Kubelet
from zenml_oom_orchestrator.localcluster.kubelet.simulated import ANNOTATION
from zenml_oom_orchestrator.localcluster.kubelet.testing import pod_body, running_node, wait_pod
from zenml_oom_orchestrator.localcluster.store import Store

pytestmark = pytest.mark.cluster

FALLBACK = "FallbackToLogsOnError"
LONG_LINES = "import sys\nfor i in range(100): print('line', i, 'x'*20, flush=True)\n"
LONG_LINES += "print('err last', file=sys.stderr)\nsys.exit(3)"
LONG_OUTPUT = "".join(f"line {i} {'x' * 20}\n" for i in range(100)) + "err last\n"
MANY_LINES = "import sys\nfor i in range(200): print(i)\n"
MANY_LINES += "sys.stdout.write('no newline at end'); sys.exit(1)"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Store, Kubelet]]:
    with running_node(tmp_path) as pair:
        yield pair


def _run(store: Store, name: str, command: list[str], policy: str | None) -> dict[str, Any]:
    body = pod_body(name, command)
    if policy:
        body["spec"]["containers"][0]["terminationMessagePolicy"] = policy
    store.create("pods", body)
    return dict(wait_pod(store, name)["status"]["containerStatuses"][0]["state"]["terminated"])


@pytest.mark.parametrize(
    ("code", "policy", "message"),
    [
        (LONG_LINES, FALLBACK, LONG_OUTPUT[-2048:]),  # the byte cap: starts "xxxxxxxx\nline 30"
        (MANY_LINES, FALLBACK, "".join(f"{i}\n" for i in range(121, 200)) + "no newline at end"),
        ("print('hello')", FALLBACK, None),  # exit 0
        ("print('x'); raise SystemExit(2)", None, None),  # File, and no file written
    ],
    ids=["2048-bytes", "80-lines", "succeeded", "file-policy"],
)
def test_the_message_is_the_logs_tail_only_for_a_failure_under_fallback_to_logs(
    node: tuple[Store, Kubelet], code: str, policy: str | None, message: str | None
) -> None:
    store, _ = node
    term = _run(store, "tail", [sys.executable, "-c", code], policy)
    assert term.get("message") == message


def test_a_start_error_keeps_the_runtimes_message_alone(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    term = _run(store, "nocmd", ["/no/such/binary"], FALLBACK)
    assert term["reason"] == "StartError"
    assert term["message"].endswith("no such file or directory")


def test_an_oom_kill_under_fallback_carries_the_logs_tail(node: tuple[Store, Kubelet]) -> None:
    store, _ = node
    body = pod_body("oom", ["no-such-binary"], "256Mi")
    body["spec"]["containers"][0]["terminationMessagePolicy"] = FALLBACK
    script = {"afterMs": 30, "exitCode": 137, "reason": "OOMKilled", "log": "before oom\n"}
    body["metadata"]["annotations"] = {ANNOTATION: json.dumps(script)}
    store.create("pods", body)
    term = wait_pod(store, "oom")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["reason"], term["message"]) == ("OOMKilled", "before oom\n")
