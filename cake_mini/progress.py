"""Progress that suits where the output goes: a live bar in a terminal or notebook, a few
plain lines in a log.

tqdm redraws its bar with carriage returns; piped into a file that becomes one line of
thousands of updates. :func:`progress_bar` therefore uses tqdm only when a person watches
(standard error is a terminal, or a Jupyter kernel runs the code) and otherwise prints a
line at most every ``log_every`` seconds (and at the end).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator


def interactive() -> bool:
    """True in a terminal or a Jupyter kernel: where a redrawn bar is read, not logged."""
    if "IPython" in sys.modules:
        from IPython import get_ipython

        if getattr(get_ipython(), "kernel", None) is not None:
            return True
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class _LogLines:
    """A tqdm look-alike for logs: ``set_postfix`` and iteration, one line per ``log_every`` s."""

    def __init__(self, iterable: Iterable, desc: str, unit: str, total: int | None, initial: int,
                 log_every: float):
        self.iterable, self.desc, self.unit, self.log_every = iterable, desc, unit, log_every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.done, self.postfix = initial, {}

    def set_postfix(self, values: dict[str, Any]) -> None:
        self.postfix = values

    def __iter__(self) -> Iterator:
        start = last = time.perf_counter()
        for item in self.iterable:
            yield item
            self.done += 1
            now = time.perf_counter()
            if now - last >= self.log_every or self.done == self.total:
                last = now
                of = f"/{self.total}" if self.total is not None else ""
                extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
                print(f"{self.desc}: {self.done}{of} {self.unit}s, {now - start:.0f} s{extra}",
                      file=sys.stderr, flush=True)


class _Silent:
    def __init__(self, iterable: Iterable):
        self.iterable = iterable

    def set_postfix(self, values: dict[str, Any]) -> None:
        pass

    def __iter__(self) -> Iterator:
        return iter(self.iterable)


def progress_bar(iterable: Iterable, *, enabled: bool = True, desc: str = "", unit: str = "it",
                 total: int | None = None, initial: int = 0, log_every: float = 30.0):
    """Wrap ``iterable`` with a progress display that has ``set_postfix``; see the module doc."""
    if not enabled:
        return _Silent(iterable)
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial, leave=False)
    return _LogLines(iterable, desc, unit, total, initial, log_every)
