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
    return run_sampled_many([args], progress, every, timeout, [log_path])[0]


def run_sampled_many(
    arg_lists: list[list[str]],
    progress: Callable[[], int],
    every: float = 0.5,
    timeout: float = 3600,
    log_paths: list[Path | None] | None = None,
) -> list[Sampled]:
    """Run one `python args...` per list at once (e.g. one supervisor per run), sampling each
    one's RSS and the shared `progress()` every `every` seconds; wait for all of them."""
    paths = log_paths or [None] * len(arg_lists)
    logs = [open(p, "wb") if p else subprocess.DEVNULL for p in paths]  # noqa: SIM115
    start = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, *args], stdout=log, stderr=log)
        for args, log in zip(arg_lists, logs, strict=True)
    ]
    samples: list[list[Sample]] = [[] for _ in procs]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            done = progress()
            for proc, out in zip(procs, samples, strict=True):
                rss = rss_mib(proc.pid) if proc.poll() is None else None
                if rss is not None:
                    out.append(Sample(time.monotonic() - start, rss, done))
            stop.wait(every)

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    codes, ends = [], []
    try:
        for proc in procs:
            try:
                codes.append(proc.wait(max(1.0, start + timeout - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
            ends.append(time.monotonic() - start)
    finally:
        stop.set()
        sampler.join()
        for proc in procs:  # only on an exception above: ours, by handle
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
    out = []
    for code, seconds, taken, path in zip(codes, ends, samples, paths, strict=True):
        tail = path.read_text(errors="replace")[-2000:] if path else ""
        out.append(Sampled(code, seconds, taken, tail))
    return out
