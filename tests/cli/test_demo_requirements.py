"""`zenml-oom demo` after a plain `pip install -e .` (no server extra): one clear line, at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def test_demo_without_the_server_extra_refuses_in_one_line_before_starting(
    tmp_path: Path,
) -> None:
    # A broken `uvicorn` first on the path stands in for the missing extra: importing it
    # fails as it does when the package is absent.
    (tmp_path / "uvicorn").mkdir()
    (tmp_path / "uvicorn" / "__init__.py").write_text("raise ImportError('not installed')\n")
    command = Path(sys.executable).with_name("zenml-oom")
    started = time.monotonic()
    proc = subprocess.run(
        [str(command), "demo"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    print(proc.stdout, proc.stderr, f"{took:.1f}s")
    assert proc.returncode == 1
    assert proc.stdout == ""  # nothing started: no "[1/5] Starting a local ZenML server"
    assert proc.stderr.strip().splitlines() == [
        "Error: the demo runs a local ZenML server, which needs ZenML's server extra "
        "(missing: uvicorn). Install it with: pip install -e '.[server]'"
    ]
