"""`zenml-oom demo`, the real command in a subprocess, as the README's quickstart runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from zenml_oom_orchestrator.localcluster.testing import pids_with

pytestmark = [pytest.mark.zenml, pytest.mark.cluster]


def test_demo_runs_the_oom_pipeline_to_completion_and_cleans_up() -> None:
    command = Path(sys.executable).with_name("zenml-oom")
    proc = subprocess.run([str(command), "demo"], capture_output=True, text=True, timeout=420)
    out = proc.stdout
    print(out[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    # Live progress: step x attempt x memory x state, with the OOM kills and the escalation.
    assert re.search(r"train_2\s+attempt 1\s+512Mi\s+OOMKilled", out)
    assert re.search(r"train_2\s+attempt 3\s+2Gi\s+Completed", out)
    # The attempt table and the final status.
    assert re.search(r"train_1\s+2\s+1Gi\s+1Gi\s+succeeded", out)
    assert re.search(r"Run `oom_demo-\S+` ended COMPLETED", out)
    # Nothing left: no temporary directory, no server or pod process using it.
    tmp = re.search(r"config in (/\S+)/zenml-config", out)
    assert tmp is not None
    assert not Path(tmp.group(1)).exists()
    assert pids_with(tmp.group(1)) == []


def test_demo_stopped_with_sigterm_mid_run_leaves_nothing_behind() -> None:
    # A second SIGTERM while it stops what it started (`timeout`, or an impatient user) waits
    # for the stop: cut short, it once left the ZenML server running.
    command = Path(sys.executable).with_name("zenml-oom")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(command), "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    out, tmp = [], None
    try:
        for line in proc.stdout:  # until the first attempt pod runs
            out.append(line)
            match = re.search(r"config in (/\S+)/zenml-config", line)
            tmp = match.group(1) if match else tmp
            if re.search(r"attempt 1\s+\S+\s+Running", line):
                break
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            out.append(line)
            if line.startswith("Stopping the local cluster"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=120)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
    print("".join(out)[-4000:])
    assert tmp is not None
    assert proc.returncode != 0
    assert "still stopping" in "".join(out)
    assert not Path(tmp).exists()
    assert pids_with(tmp) == []
