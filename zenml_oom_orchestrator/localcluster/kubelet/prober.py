"""Exec readiness probes, run as kubelet 1.35's prober runs them.

One `ReadinessProber` thread per run of a container with an exec `readinessProbe`. It runs the
probe's command *inside the container*: in its memory cgroup (a runtime's exec joins the
container's cgroups, so the probe reads its own `/proc/self/cgroup` as the container's), with
its environment and working directory. It only reports raw results to the pod worker, which
alone applies the thresholds, writes `ready` and records the `Unhealthy` Events.

As on a real kubelet (checked on kubelet 1.35.4, containerd 2.2.9): probes run on a ticker of
`periodSeconds` started with the pod worker, plus one at once when the container starts and
each time it turns unready (the kubelet's status sync triggers an immediate probe of a running,
unready container); a result inside `initialDelaySeconds` is not taken; stdout and stderr,
combined and cut at 10 KiB, are the Event's message; a probe over `timeoutSeconds` is killed and
fails with `command timed out: "<argv joined>" timed out after <N>s`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import runner
from .cgroups import CgroupBackend

MAX_OUTPUT = 10 * 1024  # the kubelet's exec prober keeps the first 10 KiB


class ProbeSpec:
    """The probe's fields with the API server's defaults."""

    def __init__(self, probe: Mapping[str, Any]) -> None:
        self.command: list[str] = list((probe.get("exec") or {}).get("command") or [])
        self.initial_delay = int(probe.get("initialDelaySeconds") or 0)
        self.period = max(1, int(probe.get("periodSeconds") or 10))
        self.timeout = max(1, int(probe.get("timeoutSeconds") or 1))
        self.success_threshold = max(1, int(probe.get("successThreshold") or 1))
        self.failure_threshold = max(1, int(probe.get("failureThreshold") or 3))


def readiness_spec(container: Mapping[str, Any]) -> ProbeSpec | None:
    """The container's exec readiness probe (other handlers are not run: never ready)."""
    probe = container.get("readinessProbe")
    return None if not probe else ProbeSpec(probe)


class ReadinessProber:
    """Runs one container's readiness probe until `stop()`; `report(ok, output)` gets results."""

    def __init__(
        self,
        spec: ProbeSpec,
        *,
        env: Mapping[str, str],
        cwd: str,
        backend: CgroupBackend,
        cgroup: Path | None,
        output_path: Path,
        ticker_origin: float,
        started: float,
        report: Callable[[bool, str], None],
        name: str,
    ) -> None:
        self.spec = spec
        self.env, self.cwd = dict(env), cwd
        self.backend, self.cgroup = backend, cgroup
        self.output_path = output_path
        self.ticker_origin, self.started = ticker_origin, started
        self.report = report
        self._stopped = threading.Event()
        self._trigger = threading.Event()
        self._trigger.set()  # the status sync at the container's start probes at once
        self.thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)

    def start(self) -> ReadinessProber:
        self.thread.start()
        return self

    def trigger(self) -> None:
        """Probe now (the kubelet does when its status sync finds the container unready)."""
        self._trigger.set()

    def stop(self) -> None:
        self._stopped.set()
        self._trigger.set()

    def _next_tick(self, t: float) -> float:
        period = self.spec.period
        ticks = int((t - self.ticker_origin) // period) + 1
        return self.ticker_origin + ticks * period

    def _run(self) -> None:
        tick = self._next_tick(time.monotonic())
        while not self._stopped.is_set():
            self._trigger.wait(max(0.0, tick - time.monotonic()))
            if self._stopped.is_set():
                return
            self._trigger.clear()
            now = time.monotonic()
            if now >= tick:
                tick = self._next_tick(now)
            if int(now - self.started) < self.spec.initial_delay:
                continue
            ok, output = self.run_once()
            if not self._stopped.is_set():
                self.report(ok, output)

    def run_once(self) -> tuple[bool, str]:
        """Run the command in the container's cgroup: (success, combined output)."""
        command = self.spec.command
        try:
            argv = runner.resolve_argv(command, None, self.env, self.cwd)
        except runner.StartError as e:  # what runc's exec says, as the probe's output
            return False, f"OCI runtime exec failed: exec failed: {e}: unknown"
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.output_path.unlink()
        try:
            proc, join_failed = self.backend.launch(
                argv, self.env, self.cwd, self.output_path, self.cgroup
            )
        except OSError as e:
            return False, f"OCI runtime exec failed: exec failed: {e}: unknown"
        if join_failed:  # the container's cgroup is gone: it is ending
            proc.wait()
            return False, join_failed
        try:
            code = proc.wait(timeout=self.spec.timeout)
        except subprocess.TimeoutExpired:
            runner.signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            joined = " ".join(command)
            return False, f'command timed out: "{joined}" timed out after {self.spec.timeout}s'
        try:
            with open(self.output_path, "rb") as f:
                output = f.read(MAX_OUTPUT).decode(errors="replace")
        except OSError:
            output = ""
        return code == 0, output


# -- the pod worker's side (it alone owns `rec` and writes the status) ---------------------------
def start_readiness(worker: Any, rec: Any, env: Mapping[str, str], cwd: str) -> None:
    """A fresh run of `rec` starts unready under its probe (the kubelet's initial Failure)."""
    spec = readiness_spec(rec.spec) if not rec.init else None
    rec.probe_ready, rec.probe_last, rec.probe_run = spec is None, None, 0
    if spec is None:
        return
    proc, k = rec.proc, worker.kubelet

    def report(ok: bool, output: str) -> None:
        worker.post("probe", rec, proc, ok, output)

    rec.prober = ReadinessProber(
        spec,
        env=env,
        cwd=cwd,
        backend=k.backend,
        cgroup=rec.cgroup,
        output_path=k.dir / "probes" / worker.uid / f"{rec.name}.out",
        ticker_origin=worker.started_monotonic,
        started=time.monotonic(),
        report=report,
        name=f"{worker.name}/{rec.name}",
    ).start()


def stop_readiness(rec: Any) -> None:
    if rec.prober is not None:
        rec.prober.stop()
        rec.prober = None
    rec.probe_ready, rec.probe_last, rec.probe_run = True, None, 0


def apply_probe_result(worker: Any, rec: Any, proc: Any, ok: bool, output: str) -> None:
    """kubelet's prober worker: a failure is an Event each time; `ready` changes only after
    `successThreshold`/`failureThreshold` equal results in a row."""
    if rec.proc is not proc or rec.prober is None:
        return  # a result for a run that has ended
    if not ok:
        worker.kubelet.record(
            worker.pod, "Unhealthy", f"Readiness probe failed: {output}", "Warning", path=rec
        )
    rec.probe_run = rec.probe_run + 1 if rec.probe_last == ok else 1
    rec.probe_last = ok
    spec = rec.prober.spec
    if rec.probe_run < (spec.success_threshold if ok else spec.failure_threshold):
        return
    if rec.probe_ready and not ok:
        rec.prober.trigger()  # the status sync that writes "unready" probes again at once
    rec.probe_ready = ok
