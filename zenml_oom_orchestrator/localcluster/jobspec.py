"""Pure Job rules: API-server defaults, pods from the template, podFailurePolicy, conditions.

Everything here works on plain dicts as the Store returns them (camelCase) and does no I/O, so
the job controller's decisions can be tested without threads.
"""

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"

TERMINAL_PHASES = ("Succeeded", "Failed")
FINISHED_CONDITIONS = ("Complete", "Failed")
# kube 1.35 writes an interim condition before each finished one (JobPodReplacementPolicy).
FAILURE_TARGET, SUCCESS_CRITERIA_MET = "FailureTarget", "SuccessCriteriaMet"
FINAL_CONDITION = {FAILURE_TARGET: "Failed", SUCCESS_CRITERIA_MET: "Complete"}

# kube-apiserver's name generator: 5 characters without vowels or look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MAX_GENERATED_PREFIX = 63 - 5


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 timestamp, None for None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def default_job(job: dict[str, Any]) -> None:
    """Fill in place what kube-apiserver defaults on a batch/v1 Job create.

    Needs `metadata.uid`: the generated selector is keyed by it. Idempotent.
    """
    meta = job.setdefault("metadata", {})
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = (
            "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
        )
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    # A pattern's status defaults to "True"; clients (kubernetes 25) refuse a Job without it.
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in rule.get("onPodConditions") or []:
            if pattern.get("status") is None:
                pattern["status"] = "True"
    template = spec.setdefault("template", {})
    tmeta = template.get("metadata") or {}
    template["metadata"] = tmeta
    # batch/v1 defaulting copies the template labels to a Job without labels before the
    # selector is generated; in Go both share one map, so the Job gets the generated ones too.
    job_without_labels = not meta.get("labels")
    if not spec["manualSelector"] and meta.get("uid"):
        uid, name = meta["uid"], meta.get("name", "")
        labels = dict(tmeta.get("labels") or {})
        labels.update(
            {
                CONTROLLER_UID_LABEL: uid,
                JOB_NAME_LABEL: name,
                LEGACY_CONTROLLER_UID_LABEL: uid,
                LEGACY_JOB_NAME_LABEL: name,
            }
        )
        tmeta["labels"] = labels
        spec.setdefault("selector", {"matchLabels": {CONTROLLER_UID_LABEL: uid}})
    if job_without_labels and tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])


def selector_string(selector: dict[str, Any] | None) -> str:
    """A `metav1.LabelSelector` dict in the `?labelSelector=` syntax the Store parses."""
    parts = [f"{k}={v}" for k, v in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def generate_pod_name(job_name: str) -> str:
    """`<job>-<random5>`, truncated the way kube-apiserver truncates a `generateName`."""
    prefix = f"{job_name}-"[:_MAX_GENERATED_PREFIX]
    return prefix + "".join(random.choices(_NAME_ALPHABET, k=5))


def owner_reference(job: dict[str, Any]) -> dict[str, Any]:
    """The controller reference a Job puts on the pods it creates."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference with `controller: true` to a batch Job, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            api = str(ref.get("apiVersion", ""))
            if api.startswith("batch/"):
                return ref
    return None


def pod_from_template(job: dict[str, Any], name: str) -> dict[str, Any]:
    """The pod the Job controller creates: template + Job labels + controller reference."""
    meta = job["metadata"]
    template = copy.deepcopy(job["spec"].get("template") or {})
    tmeta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "name": name,
        "generateName": f"{meta['name']}-"[:_MAX_GENERATED_PREFIX],
        "namespace": meta.get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_reference(job)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec")}


def _exit_code_matches(code: int, requirement: dict[str, Any]) -> bool:
    values = requirement.get("values") or []
    if requirement.get("operator") == "NotIn":
        return code not in values
    return code in values  # "In"


def _match_exit_codes(pod: dict[str, Any], requirement: dict[str, Any]) -> tuple[str, int] | None:
    # Like kube's job controller: regular containers first, then init containers; exit code 0
    # never matches, and only containers that have terminated have an exit code.
    status = pod.get("status") or {}
    wanted = requirement.get("containerName")
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            term = (cs.get("state") or {}).get("terminated")
            if not term or (wanted and cs.get("name") != wanted):
                continue
            code = int(term.get("exitCode") or 0)
            if code != 0 and _exit_code_matches(code, requirement):
                return cs.get("name", ""), code
    return None


def match_pod_failure_policy(
    job: dict[str, Any], pod: dict[str, Any]
) -> tuple[str | None, str | None]:
    """`(action, message)` of the first podFailurePolicy rule matching a failed pod.

    `(None, None)` when there is no policy or no rule matches: the failure counts.
    The messages are the ones kube's job controller writes into the Failed condition.
    """
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    pmeta = pod.get("metadata") or {}
    pod_ref = f"{pmeta.get('namespace')}/{pmeta.get('name')}"
    for index, rule in enumerate(rules):
        action = rule.get("action")
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            hit = _match_exit_codes(pod, on_codes)
            if hit:
                return action, (
                    f"Container {hit[0]} for pod {pod_ref} failed with exit code {hit[1]} "
                    f"matching {action} rule at index {index}"
                )
            continue
        for pattern in rule.get("onPodConditions") or []:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                    "status", "True"
                ):
                    return action, (
                        f"Pod {pod_ref} has condition {cond['type']} matching {action} rule "
                        f"at index {index}"
                    )
    return None, None


def restart_count(pod: dict[str, Any]) -> int:
    """Container restarts of a pod (what `restartPolicy: OnFailure` counts against backoff)."""
    status = pod.get("status") or {}
    return sum(
        int(cs.get("restartCount") or 0)
        for key in ("initContainerStatuses", "containerStatuses")
        for cs in status.get(key) or []
    )


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def finished_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's `Complete` or `Failed` condition with status True, if it has finished."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in FINISHED_CONDITIONS and cond.get("status") == "True":
            return cond
    return None


def true_condition(job: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The Job's condition of type `ctype` if its status is True."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype and cond.get("status") == "True":
            return dict(cond)
    return None


def set_condition(
    status: dict[str, Any], ctype: str, cstatus: str, reason: str, message: str, now: str
) -> None:
    """Add or update a condition; `lastTransitionTime` moves only when the status changes.

    An unchanged condition is left alone, so re-syncing a Job writes nothing new.
    """
    conditions = status.setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == ctype:
            if (cond.get("status"), cond.get("reason"), cond.get("message")) == (
                cstatus,
                reason,
                message,
            ):
                return
            if cond.get("status") != cstatus:
                cond["lastTransitionTime"] = now
            cond.update(status=cstatus, reason=reason, message=message, lastProbeTime=now)
            return
    conditions.append(
        {
            "type": ctype,
            "status": cstatus,
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    )
