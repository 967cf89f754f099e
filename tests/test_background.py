"""The background writer: order, bound, errors, thread state, and the callbacks on it.

Unit tests of :class:`~lit_restore.evaluation.background.BackgroundWorker`, then evaluation runs
(``tests/metrics_fakes.py``) that show (a) the writing of batch *k* overlaps the restoration of
batch *k+1* with ``background: true`` and not with ``false``, the two giving the same files and
rows; (b) a writer error raised in the worker ends ``trainer.test`` in the main thread, as the
same exception, and only images whose files are all complete have a row.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from metrics_fakes import FakeData, NoisyIdentity, make_metrics, make_trainer

import lit_restore.evaluation.writer as writer_module
from lit_restore.evaluation import ImageGridLogger, RestoredImageWriter
from lit_restore.evaluation.background import MAX_PENDING, BackgroundWorker
from lit_restore.evaluation.records import is_complete
from lit_restore.utils.errors import one_line
from lit_restore.utils.tables import OutputWriteError, read_rows

N = 6  # images; batches of 2 -> 3 batches


# ----------------------------------------------------------------------------- the worker alone
def test_tasks_run_in_order_and_the_queue_is_bounded():
    worker = BackgroundWorker()
    release, done = threading.Event(), []
    worker.submit(release.wait)  # occupies the thread
    for k in range(MAX_PENDING):
        worker.submit(done.append, k)  # queued: returns at once
    blocked = threading.Thread(target=worker.submit, args=(done.append, MAX_PENDING))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the queue is full: the next submit waits
    assert done == []
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    worker.close()
    assert done == list(range(MAX_PENDING + 1)) and worker.pending == 0


def test_a_task_error_is_raised_at_the_next_submit_and_the_rest_is_dropped():
    worker = BackgroundWorker()
    release, done = threading.Event(), []
    boom = ValueError("boom")

    def fail() -> None:
        release.wait()
        raise boom

    worker.submit(fail)
    worker.submit(done.append, "after the failure")  # queued behind it: dropped
    release.set()
    while worker.pending:
        time.sleep(0.01)
    with pytest.raises(ValueError) as err:
        worker.submit(done.append, "never")
    assert err.value is boom and done == []
    worker.close()  # raised once: closing does not raise it again
    worker.submit(done.append, "new run")  # a closed worker starts a new thread
    worker.close()
    assert done == ["new run"]


def test_flush_raises_the_error_and_finish_after_error_only_warns():
    worker = BackgroundWorker()
    worker.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        worker.flush()
    worker.close()

    done: list[int] = []
    worker.submit(done.append, 1)
    worker.submit(lambda: (_ for _ in ()).throw(OSError("disk full")))
    loop_error = RuntimeError("the sampler failed")
    with pytest.warns(UserWarning, match="disk full"):
        worker.finish_after_error(loop_error)  # runs what is queued, raises nothing
    assert done == [1] and worker.pending == 0


def test_tasks_run_with_the_submitting_threads_torch_state():
    worker, seen = BackgroundWorker(), []

    def probe() -> None:
        seen.append(
            (torch.is_inference_mode_enabled(), torch.is_grad_enabled(), torch.get_num_threads())
        )

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            worker.submit(probe)
        with torch.no_grad():
            worker.submit(probe)
        worker.submit(probe)
        worker.close()
    finally:
        torch.set_num_threads(threads)
    assert seen == [(True, False, 1), (False, False, 1), (False, True, 1)]


# ----------------------------------------------------------------------------- in a trainer
class _Clock:
    """Events of the loop and the writer, in the order they happened (thread-safe list)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.restored = threading.Condition()

    def add(self, event: tuple[str, int]) -> None:
        with self.restored:
            self.events.append(event)
            self.restored.notify_all()

    def wait_for(self, event: tuple[str, int], timeout: float) -> bool:
        with self.restored:
            return self.restored.wait_for(lambda: event in self.events, timeout)


class _ClockedIdentity(NoisyIdentity):
    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def restore(self, batch: dict) -> torch.Tensor:
        self._clock.add(("restore", self._batches))
        return super().restore(batch)


def _clocked_run(tmp_path: Path, background: bool, monkeypatch) -> tuple[_Clock, Path]:
    """A run whose writer, on the first image of batch k (but the last), waits for the
    restoration of batch k+1 to start, and logs when it began and ended writing that batch. In
    the background the wait ends as soon as the loop gets there (the timeout only guards against
    a hang); in the loop it cannot end early, so it is kept short."""
    clock = _Clock()
    save_png = writer_module.save_png

    def slow_save(image, path):
        name = Path(path).stem
        k = int(name[3:]) // 2  # img<i>: batch i // 2
        if int(name[3:]) % 2 == 0 and Path(path).parent.name == "restored" and k < N // 2 - 1:
            clock.add(("write", k))
            clock.wait_for(("restore", k + 1), timeout=60.0 if background else 0.2)
            clock.add(("written", k))
        return save_png(image, path)

    monkeypatch.setattr(writer_module, "save_png", slow_save)
    callbacks = [
        make_metrics(fid=False, background=background),
        RestoredImageWriter(save_measurement=True, background=background),
        ImageGridLogger(background=background),
    ]
    trainer = make_trainer(tmp_path, callbacks)
    trainer.test(_ClockedIdentity(clock), datamodule=FakeData(n=N, batch_size=2))
    return clock, tmp_path / "run" / "version_0"


def _outputs(run_dir: Path) -> tuple[list[dict], dict[str, bytes]]:
    rows = [  # repr: NaN (no peak memory on CPU) equals itself, floats compare bit for bit
        {k: repr(v) for k, v in r.items() if k != "seconds_per_image"}
        for r in read_rows(run_dir / "per_image_test.csv")[1]
    ]
    files = {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*.png"))
        if p.parent.name in ("restored", "measurement") or p.name.startswith("grid")
    }
    return rows, files


def test_writing_overlaps_the_next_batch_and_changes_nothing(tmp_path, monkeypatch):
    clock_bg, dir_bg = _clocked_run(tmp_path / "bg", True, monkeypatch)
    clock_fg, dir_fg = _clocked_run(tmp_path / "fg", False, monkeypatch)
    # background: batch 1 is restored before batch 0 is written (the loop did not wait)
    ev = clock_bg.events
    assert ev.index(("restore", 1)) < ev.index(("written", 0))
    # in the loop: batch 1 starts only after batch 0 is written (the writer waited in vain)
    ev = clock_fg.events
    assert ev.index(("written", 0)) < ev.index(("restore", 1))
    rows_bg, files_bg = _outputs(dir_bg)
    rows_fg, files_fg = _outputs(dir_fg)
    assert [r["index"] for r in rows_bg] == [repr(i) for i in range(N)]
    assert rows_bg == rows_fg  # every score, bit for bit (repr of the floats)
    assert len(files_bg) == 2 * N + 1 and files_bg == files_fg


def test_a_writer_error_ends_the_run_in_the_main_thread(tmp_path, monkeypatch):
    """Writing the measurement of image 3 (batch 1) fails as on a full disk: the run ends with
    that error (one line for the CLI), images 0-1 are committed, 2-3 are not."""
    save_png = writer_module.save_png

    def failing_save(image, path):
        if Path(path).parent.name == "measurement" and Path(path).stem == "img003":
            raise OutputWriteError(Path(path), OSError(28, "No space left on device"))
        return save_png(image, path)

    monkeypatch.setattr(writer_module, "save_png", failing_save)
    callbacks = [make_metrics(fid=False), RestoredImageWriter(save_measurement=True)]
    trainer = make_trainer(tmp_path, callbacks)
    with pytest.raises(OutputWriteError) as err:
        trainer.test(NoisyIdentity(), datamodule=FakeData(n=N, batch_size=2))
    line = one_line(err.value)
    assert line is not None and line.startswith("error: ") and "\n" not in line
    assert "No space left on device" in line and "img003.png" in line
    run_dir = tmp_path / "run" / "version_0"
    rows = read_rows(run_dir / "per_image_test.rank0.part.csv")[1]
    assert [r["index"] for r in rows] == [0, 1]
    for r in rows:  # a committed row has all its files
        assert is_complete(run_dir / "restored" / f"{r['name']}.png")
        assert is_complete(run_dir / "measurement" / f"{r['name']}.png")
    assert not (run_dir / "measurement" / "img003.png").exists()
