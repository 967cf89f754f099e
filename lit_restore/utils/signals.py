"""SIGTERM / SIGHUP as an exception: a run asked to stop stops now, with Lightning's teardown.

Lightning's own SIGTERM handler only sets a flag that its loops read after the current batch
(minutes for a 1000-step guided sampler) and then exits with status 0. Its handler calls one that
was installed before the Trainer, so :func:`terminate_on_signals` makes the signal raise
:class:`Terminated` at once; the CLI exits with status 128 + signal number (143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: stop now. A BaseException so that no ``except Exception``
    swallows it (like ``KeyboardInterrupt``); Lightning still runs its teardown on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_on_signals(
    handler: Callable[[int, Any], None] = _raise_terminated,
) -> Iterator[None]:
    """Route SIGTERM and SIGHUP to ``handler`` (default: raise :class:`Terminated`) inside the
    block; the previous handlers come back after it. Only the main thread can set handlers: in
    another thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
