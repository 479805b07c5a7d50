"""Running a client (supervisor or baseline) as a subprocess and sampling its RSS from /proc."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def rss_mib(pid: int) -> float | None:
    """Resident set size of `pid` in MiB (VmRSS), None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Sample:
    t: float  # seconds since the process started
    rss_mib: float
    progress: int  # e.g. attempts finished so far (from the server-side stamps)


@dataclass
class Sampled:
    returncode: int
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def peak_rss(self) -> float:
        return max((s.rss_mib for s in self.samples), default=0.0)


def run_sampled(
    args: list[str],
    progress: Callable[[], int],
    every: float = 0.5,
    timeout: float = 3600,
    log_path: Path | None = None,
) -> Sampled:
    """Run `python args...`, sampling RSS and `progress()` every `every` seconds."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=log)
    start = time.monotonic()
    samples: list[Sample] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = rss_mib(proc.pid)
            if rss is not None:
                samples.append(Sample(time.monotonic() - start, rss, progress()))
            stop.wait(every)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    finally:
        stop.set()
        sampler.join()
        if log_path:
            log.close()  # type: ignore[union-attr]
    tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
    return Sampled(code, time.monotonic() - start, samples, tail)
