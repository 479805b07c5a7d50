"""The demo's local ZenML server leaves no daemon behind, also when its login timed out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from zenml_oom_orchestrator.localcluster.kubelet.testing import process_gone
from zenml_oom_orchestrator.testing.zenml_server import LocalZenServer, free_port


def test_stop_kills_a_daemon_that_wrote_no_pid_file_yet(tmp_path: Path) -> None:
    """A `zenml login --local` killed by its timeout can leave the daemon it started, before
    the daemon wrote its pid file. A stand-in process with the daemon's command line (it names
    the config directory) must be killed by stop()."""
    config = tmp_path / "zenml-config"
    (config / "zen_server" / "daemon").mkdir(parents=True)
    service = config / "zen_server" / "daemon" / "service.json"
    daemon = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "--config-file", str(service)]
    )
    try:
        LocalZenServer(config_path=config, port=free_port()).stop()
        daemon.wait(10)
        assert process_gone(daemon.pid)
    finally:
        daemon.kill()
        daemon.wait()
