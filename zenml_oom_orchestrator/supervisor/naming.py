"""Deterministic, Kubernetes-valid names and label values for attempts.

A name is a pure function of (run, step, attempt), so a create that is retried after a lost
response, or repeated by a restarted supervisor, lands on the same object (409 = adopt) instead
of starting a second attempt.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63  # DNS-1123 label: a pod name is also its hostname
MAX_LABEL_VALUE = 63
HASH_LEN = 8

# Keys of the labels and annotations the supervisor writes and reads back on resume.
LABEL_RUN = "run_id"
LABEL_STEP = "step_name"
LABEL_ATTEMPT = "attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "oom-supervisor"
# Source of the one run-level marker Event, kept apart so that every Event from MANAGED_BY is
# a decision about one attempt.
RUN_MARKER_SOURCE = "oom-supervisor-run"
ANNOTATION_PREFIX = "oom.zenml.io/"
ANN_STEP = ANNOTATION_PREFIX + "step-name"
ANN_ZENML_STEP = "zenml.io/step-name"  # ZenML's own tools find step pods by this
ANN_ATTEMPT = ANNOTATION_PREFIX + "attempt"
ANN_MEMORY_REQUEST = ANNOTATION_PREFIX + "memory-request"
ANN_MEMORY_LIMIT = ANNOTATION_PREFIX + "memory-limit"
ANN_PREVIOUS_OUTCOME = ANNOTATION_PREFIX + "previous-outcome"
ANN_RESULT = ANNOTATION_PREFIX + "result"  # the finished attempt's record + decision (JSON)
# The previous attempt's result when its pod vanished before it could carry it (node lost).
ANN_PREVIOUS_RESULT = ANNOTATION_PREFIX + "previous-result"
ANN_EXPIRES = ANNOTATION_PREFIX + "expires-at"
# Epoch seconds (sub-second) the supervisor started the attempt: creationTimestamp is whole seconds.
ANN_STARTED_AT = ANNOTATION_PREFIX + "started-at"

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def short_hash(*parts: str, length: int = HASH_LEN) -> str:
    """A stable hex digest of `parts` (NUL-separated so ("ab","c") != ("a","bc"))."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def _slug(text: str, limit: int) -> str:
    """Lowercase DNS-1123 fragment of at most `limit` characters (may be empty)."""
    slug = _INVALID_NAME_CHARS.sub("-", text.lower()).strip("-")
    return slug[:limit].rstrip("-")


def attempt_name(run_id: str, step_name: str, attempt: int, prefix: str = "") -> str:
    """The pod name of `attempt` (1-based) of `step_name` in `run_id`, at most 63 characters.

    The readable part (prefix and step) is truncated; uniqueness comes from the hash of the full
    run id and step name, so two long names that share a prefix never collide.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    suffix = f"-{short_hash(run_id, step_name)}-a{attempt}"
    readable = "-".join(p for p in (_slug(prefix, MAX_NAME), _slug(step_name, MAX_NAME)) if p)
    head = _slug(readable, MAX_NAME - len(suffix)) or "step"
    return head + suffix


def label_value(value: str) -> str:
    """`value` as a valid label value: unchanged when already valid, else sanitised + hashed."""
    if len(value) <= MAX_LABEL_VALUE and _LABEL_VALUE.match(value):
        return value
    tail = "-" + short_hash(value)
    body = _INVALID_LABEL_CHARS.sub("-", value).strip("-_.")
    body = body[: MAX_LABEL_VALUE - len(tail)].rstrip("-_.")
    return (body + tail) if body else tail.lstrip("-")


def event_name(object_name: str, reason: str) -> str:
    """Deterministic Event name, so a restarted supervisor re-emitting it gets 409, not a copy."""
    return f"{object_name}.{reason.lower()}"


def run_selector(run_id: str) -> str:
    """The label selector that matches every attempt of one run, and nothing else: ZenML puts
    the same `run_id` label on the orchestrator pod that runs the supervisor."""
    return f"{LABEL_RUN}={label_value(run_id)},{LABEL_MANAGED_BY}={MANAGED_BY}"
