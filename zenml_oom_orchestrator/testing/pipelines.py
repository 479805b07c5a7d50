"""Pipelines whose steps really need memory, for the end-to-end tests and the README demo.

They live in the package (not in a test folder) so that step pods, which import the step's
source, find them wherever the package is installed.
"""

from __future__ import annotations

import atexit
import time

from zenml import pipeline, step
from zenml.config.retry_config import StepRetryConfig

MiB = 1024 * 1024


def hold_memory(mib: int, seconds: float = 1.0) -> int:
    """Touch ``mib`` MiB page by page (so it is really resident), hold it, return the size."""
    block = bytearray(mib * MiB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(seconds)
    return len(block) // MiB


@step
def allocate(mib: int, seconds: float = 1.0, tag: str = "") -> int:
    """A step that needs about ``mib`` MiB on top of ZenML's own ~135 MB. ``tag`` only makes
    the step's cache key unique (see ``cacheable``)."""
    return hold_memory(mib, seconds)


@step
def report(tag: str = "") -> str:
    """Runs only after its upstream steps succeeded (ordering via ``after=``)."""
    return "done"


@pipeline(enable_cache=False)
def fan_out(mib: int = 400, width: int = 4, seconds: float = 1.0) -> None:
    """``width`` parallel steps that each need ``mib`` MiB, then one step that sums them."""
    names = [f"allocate_{i}" for i in range(width)]
    for name in names:
        allocate(mib, seconds, id=name)
    report(after=names)


@pipeline(enable_cache=False)
def parallel_on_a_full_node(mib: int = 1100, width: int = 8, seconds: float = 60.0) -> None:
    """ZenML issue #3440 scaled down: ``width`` parallel steps, no memory settings, that
    together need more memory than the node has, each holding it for ``seconds``."""
    names = [f"load_{i}" for i in range(width)]
    for name in names:
        allocate(mib, seconds, id=name)
    report(after=names)


@pipeline(enable_cache=False)
def over_the_cap(mib: int = 900, seconds: float = 1.0) -> None:
    """One step that needs more than its cap allows, one downstream step that must not start."""
    allocate(mib, seconds, id="greedy")
    report(id="after_greedy", after=["greedy"])


@step
def fail(message: str = "the step's own bug") -> int:
    """An app error: more memory would not help."""
    raise RuntimeError(message)


@step
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline(enable_cache=False)
def buggy(retries: int = 1) -> None:
    """One step that always raises: retried only as often as the step's own retry config says."""
    fail.with_options(retry=StepRetryConfig(max_retries=retries))()


@pipeline(enable_cache=False)
def failing_beside_a_long_step(sleep_seconds: float = 120) -> None:
    """One step fails while a sibling still runs; the sibling has a downstream step (for the
    execution modes: stopped, finished, or finished and followed)."""
    fail()
    sleep(sleep_seconds)
    report(after=["sleep"])


@pipeline(enable_cache=False)
def long_running(sleep_seconds: float = 120) -> None:
    """One long step, for stopping a run."""
    sleep(sleep_seconds)


@pipeline(enable_cache=True)
def cacheable(mib: int = 10, tag: str = "") -> None:
    """Two small independent steps and one after them; cached on a second run with the same
    ``tag``. A tag of its own per test makes the first run fresh whatever ran before it (every
    other pipeline here uses ``report`` too, and a step's cache key does not name its pipeline).
    """
    allocate(mib, 0.1, tag, id="first")
    allocate(mib + 1, 0.1, tag, id="second")  # other inputs: not a cache hit of `first`
    report(tag, after=["first", "second"])


@pipeline(enable_cache=False)
def early_then_long(sleep_seconds: float = 20) -> None:
    """A step that ends at once, then a long one and one after it: for deleting the
    orchestrator pod while a step runs and another has already completed."""
    allocate(10, 0.1, id="early")
    sleep(sleep_seconds, after=["early"])
    report(after=["sleep"])


@step
def grow_steadily(mib: int, mib_per_second: float = 50.0) -> int:
    """Touch ``mib`` MiB in 5 MiB chunks at ``mib_per_second``, kept until the end: a step
    whose memory grows while it works (the case in-place growth is for)."""
    kept, done, started = [], 0, time.monotonic()
    while done < mib:
        chunk = bytearray(5 * MiB)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        kept.append(chunk)
        done += 5
        time.sleep(max(0.0, started + done / mib_per_second - time.monotonic()))
    return done


@pipeline(enable_cache=False)
def growing(mib: int = 550, mib_per_second: float = 50.0) -> None:
    """One step that grows steadily, then one after it."""
    grow_steadily(mib, mib_per_second, id="grower")
    report(after=["grower"])


@step
def finish_then_oom(mib: int) -> int:
    """Succeeds (its step run is COMPLETED), then its process needs ``mib`` MiB more while it
    exits: an OOM kill in teardown, as an atexit handler or a library's cleanup can cause."""
    atexit.register(lambda: len(b"\x01" * (mib * MiB)))  # one C-level write: all resident
    return mib


@pipeline(enable_cache=False)
def oom_in_teardown(mib: int = 900) -> None:
    """One step OOM-killed after it reported success, and one after it."""
    finish_then_oom(mib)
    report(after=["finish_then_oom"])
