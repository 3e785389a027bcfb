"""One setting picks how big every run is: ``CAKE_MINI_SIZE`` = smoke | default | paper.

* ``smoke``: seconds to a minute on a laptop CPU; what CI and nbval run.
* ``default``: meaningful results in minutes on a Colab GPU.
* ``paper``: the paper's sample counts and step numbers.
"""
from __future__ import annotations

import os
from typing import TypeVar

SIZES = ("smoke", "default", "paper")
T = TypeVar("T")


def get_size(size: str | None = None) -> str:
    """``size`` if given, else ``$CAKE_MINI_SIZE``, else ``"default"``; validated."""
    size = size or os.environ.get("CAKE_MINI_SIZE") or "default"
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES} (from CAKE_MINI_SIZE or --size), got {size!r}")
    return size


def pick(smoke: T, default: T, paper: T, size: str | None = None) -> T:
    """The value for the current size: ``pick(smoke=1_000, default=25_000, paper=256_000)``."""
    return {"smoke": smoke, "default": default, "paper": paper}[get_size(size)]
