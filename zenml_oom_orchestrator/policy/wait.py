"""How long to wait before the next attempt, composable the way tenacity's waits are.

``wait_fixed(10) + wait_exponential(multiplier=2)`` adds the two, as in tenacity. A wait is
called with the retry number *within one budget* (1 for that budget's first retry), so an
OOM retry's delay does not grow because of earlier infrastructure retries.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

__all__ = ["wait_base", "wait_combine", "wait_exponential", "wait_fixed", "wait_none"]


class wait_base(ABC):  # tenacity's lowercase names, on purpose
    """A delay in seconds as a function of the retry number (1-based)."""

    @abstractmethod
    def __call__(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number``."""

    def __add__(self, other: wait_base) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: int) -> wait_base:
        # sum() starts from 0; like tenacity, let that be neutral. (wait + wait uses __add__.)
        if other == 0:
            return self
        return NotImplemented


class wait_fixed(wait_base):
    """The same delay every time."""

    def __init__(self, wait: float) -> None:
        if wait < 0:
            raise ValueError(f"wait_fixed(wait={wait!r}): a delay cannot be negative")
        self.wait = float(wait)

    def __call__(self, retry_number: int) -> float:
        return self.wait

    def __repr__(self) -> str:
        return f"wait_fixed({self.wait:g})"


class wait_none(wait_fixed):
    """No delay."""

    def __init__(self) -> None:
        super().__init__(0)

    def __repr__(self) -> str:
        return "wait_none()"


class wait_exponential(wait_base):
    """``multiplier * exp_base ** (retry_number - 1)``, clamped to ``[min, max]``."""

    def __init__(
        self,
        multiplier: float = 1,
        max: float = math.inf,  # tenacity's parameter name
        exp_base: float = 2,
        min: float = 0,
    ) -> None:
        if multiplier < 0 or exp_base < 0 or min < 0 or max < min:
            raise ValueError(
                f"wait_exponential(multiplier={multiplier!r}, max={max!r}, exp_base={exp_base!r}, "
                f"min={min!r}): all must be >= 0 and max >= min"
            )
        self.multiplier, self.max, self.exp_base, self.min = multiplier, max, exp_base, min

    def __call__(self, retry_number: int) -> float:
        try:
            delay = self.multiplier * self.exp_base ** (max(retry_number, 1) - 1)
        except OverflowError:
            delay = math.inf  # a huge retry number must clamp, not crash
        return float(max(self.min, min(delay, self.max)))

    def __repr__(self) -> str:
        return (
            f"wait_exponential(multiplier={self.multiplier:g}, max={self.max:g}, "
            f"exp_base={self.exp_base:g}, min={self.min:g})"
        )


class wait_combine(wait_base):
    """The sum of several waits."""

    def __init__(self, *waits: wait_base) -> None:
        self.waits = waits

    def __call__(self, retry_number: int) -> float:
        return sum(w(retry_number) for w in self.waits)

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.waits))
