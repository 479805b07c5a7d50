"""One pod's lifecycle on the node: init containers, containers, restarts, deletion.

Each pod has one worker thread that alone owns the pod's status and processes (one writer),
fed by an inbox: pod updates from the kubelet's watch, process exits, faults, stop.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import podresources, prober, resize, runner, simulated
from .events import now
from .faults import image_pull_failed
from .podenv import ConfigError, container_env, expand_argv
from .status import (
    ContainerRecord,
    pod_phase,
    should_restart,
    terminated,
    terminated_reason,
    termination_message,
    waiting,
)
from .status_writer import StatusWriter

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)

_EXIT, _POD, _CALL, _GONE, _STOP, _PROBE = "exit", "pod", "call", "gone", "stop", "probe"
RESIZE_RETRY = "resize-retry"
_CONFIG_RETRY = 1.0  # seconds before retrying a CreateContainerConfigError


class PodWorker(StatusWriter):
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.store = kubelet.store
        self.pod = pod
        meta, spec = pod["metadata"], pod.get("spec") or {}
        self.uid: str = meta["uid"]
        self.namespace: str = meta.get("namespace", "default")
        self.name: str = meta["name"]
        self.policy: str = spec.get("restartPolicy") or "Always"
        self.init = [ContainerRecord(dict(c), init=True) for c in spec.get("initContainers") or []]
        self.main = [ContainerRecord(dict(c)) for c in spec.get("containers") or []]
        for rec in self.records if self.init else []:  # init containers too, as kubelet does
            rec.state = waiting("PodInitializing")
        for rec in self.records:
            resize.init_allocation(rec)
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.lock = threading.Lock()
        self.finished = False
        self.start_time = now()
        self._started = self.started_monotonic = time.monotonic()
        deadline = spec.get("activeDeadlineSeconds")
        self._deadline = None if deadline is None else self._started + int(deadline)
        self._kill_at: float | None = None  # set once the pod is being deleted
        self._override: tuple[str, str, str] | None = None  # (phase, reason, message)
        self._frozen = False  # node lost: the status stays as it was last seen
        # Set when every container has ended: until then the last phase is reported.
        self._terminal_due: float | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"pod-{self.namespace}/{self.name}", daemon=True
        )
        StatusWriter.__init__(self)

    # -- inbox -------------------------------------------------------------------------------
    def post(self, *msg: Any) -> bool:
        """Queue a message; False once the worker has finished (the caller handles it)."""
        with self.lock:
            if self.finished:
                return False
            self.inbox.put(msg)
            return True

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run `fn` on the worker thread (faults), so the worker stays the only writer."""
        done: queue.Queue[tuple[bool, Any]] = queue.Queue()
        if not self.post(_CALL, fn, done):
            raise RuntimeError(f"pod {self.namespace}/{self.name} is no longer running here")
        ok, value = done.get(timeout=timeout)
        if not ok:
            raise value
        return value

    @property
    def records(self) -> list[ContainerRecord]:
        return [*self.init, *self.main]

    @property
    def running(self) -> list[ContainerRecord]:
        return [r for r in self.records if r.proc is not None]

    # -- main loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.write_status()
            while not self.finished:
                self._reconcile()
                if self.finished:
                    break
                try:
                    msg = self.inbox.get(timeout=self._next_wakeup())
                except queue.Empty:
                    continue
                self._handle(msg)
        except Exception:  # noqa: BLE001
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
        finally:
            for rec in self.records:
                prober.stop_readiness(rec)
            self._kill_all(signal.SIGKILL)
            self.kubelet.backend.remove_pod(self.uid)
            with self.lock:
                self.finished = True
                leftover = list(self.inbox.queue)
            for msg in leftover:  # a deletion that raced with the end of the pod
                if msg[0] == _POD and msg[1]["metadata"].get("deletionTimestamp"):
                    self.kubelet.finalize_deletion(msg[1])
                elif msg[0] == _CALL:
                    msg[2].put((False, RuntimeError("pod finished")))

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == _EXIT:
            self._on_exit(msg[1], msg[2])
        elif kind == _POD:
            self.pod = msg[1]
            if self.pod["metadata"].get("deletionTimestamp"):
                self._begin_deletion()
            resize.sync_resize(self)
        elif kind == RESIZE_RETRY:
            resize.sync_resize(self, retry=True)
        elif kind == _CALL:
            try:
                msg[2].put((True, msg[1]()))
            except Exception as e:  # noqa: BLE001 - handed back to the caller
                msg[2].put((False, e))
        elif kind == _PROBE:
            prober.apply_probe_result(self, *msg[1:])
        elif kind in (_GONE, _STOP):
            self._kill_all(signal.SIGKILL)
            self._wait_exits(2.0)
            self.finished = True

    def _next_wakeup(self) -> float | None:
        times = [t for t in (self._deadline, self._kill_at, self._terminal_due) if t is not None]
        if self._kill_at is None:
            times += [r.next_start for r in self.records if r.next_start and r.proc is None]
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _reconcile(self) -> None:
        t = time.monotonic()
        if self._kill_at is not None:
            if self.running and t >= self._kill_at:
                self._kill_all(signal.SIGKILL)
                self._wait_exits(5.0)
            if not self.running:
                self.write_status()
                self.kubelet.backend.remove_pod(self.uid)  # cgroups go before the pod does
                self.kubelet.finalize_deletion(self.pod)
                self.finished = True
            return
        if self._deadline is not None and t >= self._deadline and self._override is None:
            self.kubelet.record(
                self.pod,
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
                "Warning",
            )
            self.terminate(
                "Failed",
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
        if self._override is None:
            self._start_due(t)
        phase = (
            self._override[0] if self._override else pod_phase(self.policy, self.init, self.main)
        )
        if phase in podresources.TERMINAL_PHASES and not self.running:
            if self._override is None and not self._frozen and self._hold_terminal_phase(t):
                self.write_status()  # the containers' terminated states, the phase as it was
                return
            self._terminal_due = None
            self.write_status()
            self.finished = True
        elif not self._frozen:
            self.write_status()

    def _hold_terminal_phase(self, t: float) -> bool:
        """True while the terminal phase waits for its own, later status update."""
        if self._terminal_due is None:
            self._terminal_due = t + self.kubelet.terminal_phase_delay
        return t < self._terminal_due

    def _start_due(self, t: float) -> None:
        for rec in self.init:
            if rec.exit_code == 0:
                continue
            if rec.proc is None and self._wants_start(rec, t):
                self._start(rec)
            return  # init containers run one at a time, in order
        for rec in self.main:
            if rec.proc is None and self._wants_start(rec, t):
                self._start(rec)

    def _wants_start(self, rec: ContainerRecord, t: float) -> bool:
        if "terminated" in rec.state:
            return False  # not to be restarted (restarts go through a waiting state)
        return t >= rec.next_start

    # -- containers --------------------------------------------------------------------------
    def _start(self, rec: ContainerRecord) -> None:
        k = self.kubelet
        self.sandbox_ready = True  # made before the first image pull or container start
        image = str(rec.spec.get("image", ""))
        if k.image_pull_fails(image):
            image_pull_failed(self, rec, image)
            return
        if rec.runs == 0:
            k.record(
                self.pod,
                "Pulled",
                f'Container image "{image}" already present on machine and can be accessed by the pod',
                path=rec,
            )
        outcome = simulated.outcome_for(self.pod, rec.name, rec.runs)
        try:
            env = container_env(
                self.pod, rec.spec, k.get_secret(self.namespace), k.allocatable, k.base_env
            )
            cwd = str(rec.spec.get("workingDir") or k.default_cwd)
            argv = (
                runner.resolve_argv(
                    expand_argv(rec.spec.get("command"), env),
                    expand_argv(rec.spec.get("args"), env),
                    env,
                    cwd,
                )
                if outcome is None
                else []
            )
        except ConfigError as e:
            rec.state = waiting("CreateContainerConfigError", str(e))
            rec.next_start = time.monotonic() + _CONFIG_RETRY
            k.record(self.pod, "Failed", f"Error: {e}", "Warning", path=rec)
            return
        except runner.StartError as e:
            self._start_failed(rec, str(e))
            return
        log_path = k.log_path(self.uid, rec.name, rec.runs)
        if outcome is not None:
            proc: Any = simulated.SimulatedProcess(outcome, log_path)
        else:
            limit = podresources.memory_limit_bytes(rec.spec)
            try:
                rec.cgroup = (
                    k.backend.create(self.uid, rec.name, limit) if k.backend.enforcing else None
                )
                rec.oom_baseline = k.backend.oom_kill_count(rec.cgroup)
                proc = runner.spawn(argv, env, cwd, log_path, k.backend, rec.cgroup)
            except (OSError, RuntimeError) as e:
                if rec.cgroup is not None:  # nothing runs in it: no reason to keep it
                    k.backend.destroy(rec.cgroup)
                    rec.cgroup = None
                self._start_failed(rec, str(e))
                return
        rec.runs += 1
        rec.proc = proc
        rec.container_id = f"local://{proc.pid}"
        rec.killed_reason = None
        rec.state = {"running": {"startedAt": now()}}
        rec.actual = rec.allocated
        k.record(self.pod, "Created", "Container created", path=rec)  # kubelet 1.35's words
        k.record(self.pod, "Started", "Container started", path=rec)
        prober.start_readiness(self, rec, env, cwd)
        threading.Thread(
            target=self._wait_process, args=(rec, proc), name=f"wait-{proc.pid}", daemon=True
        ).start()

    def _wait_process(self, rec: ContainerRecord, proc: Any) -> None:
        proc.wait()
        self.inbox.put((_EXIT, rec, proc))

    def _start_failed(self, rec: ContainerRecord, message: str) -> None:
        """containerd's StartError: exit 128, handled like any exit (restart policy applies)."""
        rec.state = terminated(128, "StartError", now(), message=message)
        self.kubelet.record(self.pod, "Failed", f"Error: {message}", "Warning", path=rec)
        self._after_exit(rec)

    def _on_exit(self, rec: ContainerRecord, proc: Any) -> None:
        if rec.proc is not proc:
            return
        code, _ = runner.exit_code(proc.returncode)  # a signal shows only as 128+N
        oom_kills = self.kubelet.backend.oom_kill_count(rec.cgroup) - rec.oom_baseline
        oom_kills += getattr(proc, "oom_kills", 0)  # a simulated OOM kill
        reason = terminated_reason(code, oom_kills > 0)
        started = rec.state.get("running", {}).get("startedAt")
        log = self.kubelet.log_path(self.uid, rec.name, rec.runs - 1)
        message = termination_message(rec.spec, code, getattr(proc, "message", None), log)
        rec.state = terminated(
            code, reason, started, message=message, container_id=rec.container_id
        )
        rec.proc = None
        prober.stop_readiness(rec)
        if rec.cgroup is not None:  # a runtime kills what PID 1 left behind
            self.kubelet.backend.destroy(rec.cgroup)
            rec.cgroup = None
        else:
            _signal(proc, signal.SIGKILL)
        # No Event for it: a real kubelet's OOM watcher reports system OOMs only; the
        # reason OOMKilled in the container's state is the whole record.
        self._after_exit(rec)

    def _after_exit(self, rec: ContainerRecord) -> None:
        code = rec.exit_code or 0
        restart = should_restart("OnFailure" if rec.init else self.policy, code)
        if rec.init and self.policy == "Never":
            restart = False
        if not restart or self._kill_at is not None or self._override is not None:
            return
        lo, hi = self.kubelet.restart_backoff
        rec.backoff = lo if rec.backoff == 0 else min(hi, rec.backoff * 2)
        rec.next_start = time.monotonic() + rec.backoff
        rec.last_state, rec.restart_count = rec.state, rec.restart_count + 1
        msg = (
            f"back-off {rec.backoff:g}s restarting failed container={rec.name} "
            f"pod={self.name}_{self.namespace}({self.uid})"
        )
        rec.state = waiting("CrashLoopBackOff", msg)
        self.kubelet.record(
            self.pod,
            "BackOff",
            f"Back-off restarting failed container {rec.name} in pod "
            f"{self.name}_{self.namespace}({self.uid})",
            "Warning",
            path=rec,
        )

    # -- stopping ----------------------------------------------------------------------------
    def _begin_deletion(self) -> None:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get(
            "deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)
        )
        kill_at = time.monotonic() + float(grace or 0)
        if self._kill_at is not None:
            self._kill_at = min(self._kill_at, kill_at)  # a second delete can shorten the grace
            return
        self._kill_at = kill_at
        self._stop_containers("Stopping container {}", signal.SIGTERM if grace else signal.SIGKILL)

    def _stop_containers(self, message: str, sig: int) -> None:
        for rec in self.running:
            self.kubelet.record(self.pod, "Killing", message.format(rec.name), path=rec)
            rec.killed_reason = "killed"
            assert rec.proc is not None
            _signal(rec.proc, sig)
        for rec in self.records:  # nothing waiting will start any more
            if rec.proc is not None or "terminated" in rec.state:
                continue
            if "terminated" in rec.last_state:  # was waiting to restart
                rec.state, rec.last_state = rec.last_state, {}
                rec.restart_count -= 1
            else:
                rec.state = terminated(
                    137,
                    "ContainerStatusUnknown",
                    None,
                    message="The container could not be located when the pod was terminated",
                )

    def terminate(self, phase: str, reason: str, message: str) -> None:
        """Fail the pod now (deadline, eviction): kill everything and report `phase`/`reason`."""
        self._override = (phase, reason, message)
        self._stop_containers("Stopping container {}", signal.SIGKILL)
        self._wait_exits(5.0)

    def freeze(self) -> None:
        """Node lost: the processes die with the node and nobody reports for the pod again."""
        self._frozen = True
        self._kill_all(signal.SIGKILL)
        self._wait_exits(5.0)
        self.finished = True

    def _kill_all(self, sig: int) -> None:
        for rec in self.running:
            assert rec.proc is not None
            _signal(rec.proc, sig)
            if rec.cgroup is not None and sig == signal.SIGKILL:
                self.kubelet.backend.kill(rec.cgroup)

    def _wait_exits(self, timeout: float) -> None:
        """Process exit messages until no container runs (or `timeout`), keeping the rest."""
        end = time.monotonic() + timeout
        kept: list[tuple[Any, ...]] = []
        while self.running and time.monotonic() < end:
            try:
                msg = self.inbox.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if msg[0] == _EXIT:
                self._on_exit(msg[1], msg[2])
            else:
                kept.append(msg)
        for msg in kept:
            self.inbox.put(msg)

    def pod_gone(self) -> None:
        """The pod left the store (forced deletion, node lost): stop without writing."""
        self._frozen = True
        self.post(_GONE)


def _signal(proc: Any, sig: int) -> None:
    """Signal a container's whole process group (or its simulated stand-in)."""
    if not simulated.kill_signal(proc, sig):
        runner.signal_group(proc.pid, sig)
