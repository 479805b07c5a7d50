"""`python -m zenml_oom_orchestrator.supervisor --spec run.yaml`: run one RunSpec to the end.

Meant to be the orchestrator pod's command (the ZenML flavor can reuse it with `--observer`)
and what the restart tests kill. Signals:
- SIGTERM/SIGINT end this process only; attempts keep running, and a supervisor started again
  with the same spec resumes them (a drained orchestrator pod must not kill the run). With
  `--stop-on-signal` they stop the run instead.
- SIGUSR1 stops the run: in-flight attempts are deleted, finished ones kept.
Exit codes: 0 succeeded, 1 failed, 2 stopped, 3 the supervisor itself could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any

import yaml

from zenml_oom_orchestrator.supervisor.observer import BaseObserver, MultiObserver, Observer
from zenml_oom_orchestrator.supervisor.runner import Supervisor, SupervisorError
from zenml_oom_orchestrator.supervisor.spec import RunResult, RunSpec, RunStatus, StepResult

EXIT = {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1, RunStatus.STOPPED: 2}


class JsonLinesObserver(BaseObserver):
    """Writes every hook as one JSON line (for tests, logs, or a process tailing the run)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._lock = threading.Lock()

    def _write(self, event: str, **data: Any) -> None:
        with self._lock:
            self.out.write(json.dumps({"event": event, **data}, sort_keys=True) + "\n")
            self.out.flush()

    def on_attempt_started(self, step: str, attempt: Any) -> None:
        self._write("attempt_started", step=step, attempt=attempt.to_dict())

    def on_attempt_waiting(self, step: str, attempt: Any, message: str) -> None:
        self._write("attempt_waiting", step=step, attempt=attempt.to_dict(), message=message)

    def on_attempt_finished(self, step: str, attempt: Any, decision: Any) -> None:
        d = decision.to_dict() if decision is not None else None
        self._write("attempt_finished", step=step, attempt=attempt.to_dict(), decision=d)

    def on_step_finished(self, step: str, result: StepResult) -> None:
        self._write("step_finished", step=step, result=result.to_dict())

    def on_run_finished(self, result: RunResult) -> None:
        self._write("run_finished", result=result.to_dict())


def load_spec(path: str) -> RunSpec:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        # JSON first: PyYAML takes ~10 s and ~90 MiB for a 4,000-step (1.2 MB) JSON spec,
        # json 0.3 s and 7 MiB. YAML (a superset) is the fallback.
        data = json.loads(text)
    except json.JSONDecodeError:
        data = yaml.safe_load(text)
    return RunSpec.model_validate(data)


def api_client(kubeconfig: str | None, context: str | None, in_cluster: bool) -> Any:
    from kubernetes import client, config

    if in_cluster:
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def _load_observer(target: str, spec: RunSpec) -> Observer:
    """`module:factory`; the factory gets the RunSpec and returns an Observer."""
    module, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(spec)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zenml_oom_orchestrator.supervisor")
    parser.add_argument("--spec", required=True, help="RunSpec as JSON or YAML ('-': stdin)")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    parser.add_argument("--in-cluster", action="store_true")
    parser.add_argument("--result", help="write the RunResult JSON here")
    parser.add_argument("--events", help="append every observer hook as a JSON line here")
    parser.add_argument("--observer", help="module:factory(spec) -> Observer")
    parser.add_argument("--stop-on-signal", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(message)s")

    try:
        spec = load_spec(args.spec)
    except (ValueError, OSError, yaml.YAMLError) as err:  # pydantic's ValidationError included
        # Nothing has touched the cluster yet; say which field is wrong, not a traceback.
        print(f"invalid run spec {args.spec}: {err}", file=sys.stderr)
        return 3
    observers: list[Observer] = []
    events_file = open(args.events, "a") if args.events else None  # noqa: SIM115 - lives for the run
    if events_file is not None:
        observers.append(JsonLinesObserver(events_file))
    if args.observer:
        observers.append(_load_observer(args.observer, spec))
    observer = MultiObserver(*observers)
    sup = Supervisor(api_client(args.kubeconfig, args.context, args.in_cluster), spec, observer)

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGUSR1 or args.stop_on_signal:
            sup.stop()
        else:
            raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, on_signal)
    try:
        result = sup.run()
    except SupervisorError as err:
        logging.error("%s", err)
        return 3
    finally:
        if events_file is not None:
            events_file.close()
    if args.result:
        Path(args.result).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    return EXIT[result.status]


if __name__ == "__main__":
    sys.exit(main())
