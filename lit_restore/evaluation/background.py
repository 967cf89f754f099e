"""``BackgroundWorker``: the evaluation callbacks' per-batch work on one thread beside the loop.

Scoring a batch, encoding and fsyncing its PNGs and appending its CSV rows take the main thread
away from the accelerator for as long as they last. The evaluation callbacks
(:class:`~lit_restore.evaluation.base.EvaluationCallback`, ``background: true``) hand that work
to one worker thread per trainer instead, so batch *k* is written while batch *k+1* is restored.

* **Order.** One thread and a FIFO queue: every task runs in the order it was submitted, one at a
  time — the same sequence as without the worker. :class:`~lit_restore.evaluation.records.RunRecords`
  therefore still commits an image's row only after every participant wrote its files, and needs
  no lock.
* **Bounded.** At most :data:`MAX_PENDING` tasks wait; a further ``submit`` blocks until one is
  done, so memory stays bounded when writing is slower than restoring.
* **Errors** raised by a task are re-raised in the main thread by the next ``submit`` and by
  ``flush`` (the same exception object: a user error still ends the run with one line). The
  tasks queued after a failure are dropped: their images have no row, so a rerun redoes them.
* **Nothing lost.** :meth:`flush` (end of every evaluation epoch) waits for all queued tasks;
  :meth:`close` (teardown) also joins the thread; :meth:`finish_after_error` (Lightning's
  ``on_exception``: a crash, Ctrl-C, SIGTERM) runs what is queued — images restored before the
  failure are written and committed — and reports its own failures as a warning only, so the
  original exception stays the one the user sees. A killed process loses the queued tasks, and
  with them only rows that were never committed.
* **Thread state.** Grad / inference mode, the intra-op thread count and the current CUDA device
  are per thread in PyTorch; each task runs with the values the submitting thread had, so a
  metric computed in the worker equals the one computed inline (same kernels, same threads).
  On CUDA the tasks use the same (default) stream as the loop, so no synchronisation is needed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

#: tasks that may wait in the queue: each evaluation callback submits one per batch, so with the
#: usual three (metrics, writer, grid) the loop runs at most about two batches ahead of the
#: writing — enough to keep the worker busy, and the batches held in memory stay few
MAX_PENDING = 6


@dataclass(frozen=True)
class ThreadState:
    """The per-thread PyTorch settings a task must run with (see the module docstring)."""

    grad: bool
    inference: bool
    num_threads: int
    cuda_device: int | None

    @classmethod
    def capture(cls) -> ThreadState:
        cuda = torch.cuda.current_device() if torch.cuda.is_initialized() else None
        return cls(
            grad=torch.is_grad_enabled(),
            inference=torch.is_inference_mode_enabled(),
            num_threads=torch.get_num_threads(),
            cuda_device=cuda,
        )

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        if torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        if self.cuda_device is not None:
            torch.cuda.set_device(self.cuda_device)
        with torch.inference_mode(self.inference), torch.set_grad_enabled(self.grad):
            yield


class BackgroundWorker:
    """One worker thread fed by a bounded FIFO queue (module docstring).

    Args:
        max_pending: tasks that may wait before ``submit`` blocks.
    """

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: a task failed since the thread started: the rest of the queue is dropped
        self._failed = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, trainer: object) -> BackgroundWorker:
        """The worker of ``trainer`` (one per trainer, shared by its evaluation callbacks)."""
        worker = _WORKERS.get(trainer)
        if worker is None:
            worker = _WORKERS[trainer] = cls()
        return worker

    # ------------------------------------------------------------------ main thread
    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; first re-raises the error of an earlier task, if any."""
        self._raise_pending()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="lit_restore-background-writer", daemon=True
            )  # daemon: an interpreter that exits without teardown must not hang on it
            self._thread.start()
        self._queue.put((fn, args, ThreadState.capture()))

    def flush(self) -> None:
        """Wait until every queued task is done; re-raise the first error among them."""
        if self._thread is not None:
            self._queue.join()
        self._raise_pending()

    def close(self) -> None:
        """:meth:`flush`, then stop and join the thread (a later ``submit`` starts a new one)."""
        try:
            self.flush()
        finally:
            thread, self._thread = self._thread, None
            if thread is not None and thread.is_alive():
                self._queue.put(None)
                thread.join()
            self._failed = False

    def finish_after_error(self, error: BaseException | None = None) -> None:
        """The loop failed with ``error``: run what is queued and join, without raising — a
        task's own failure is reported as a warning, so ``error`` stays the one reported."""
        try:
            self.close()
        except BaseException as err:  # must not replace the loop's error
            if err is not error:
                warnings.warn(
                    f"the background writer failed while finishing the interrupted run: "
                    f"{type(err).__name__}: {err}; the images concerned have no row and are "
                    "redone when the run is resumed",
                    stacklevel=2,
                )

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet finished (queued or running)."""
        return self._queue.unfinished_tasks

    def _raise_pending(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    # ------------------------------------------------------------------ worker thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args, state = item
                if not self._failed:  # after a failure the rest is dropped (module docstring)
                    with state.applied():
                        fn(*args)
            except BaseException as err:  # handed to the main thread
                with self._lock:
                    self._failed = True
                    self._error = err
            finally:
                self._queue.task_done()


_WORKERS: weakref.WeakKeyDictionary[object, BackgroundWorker] = weakref.WeakKeyDictionary()
