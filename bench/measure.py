"""What every benchmark here measures the same way: time, peak memory, output differences.

* **Time**: :func:`interleaved` runs each variant once per round, rounds repeated, and reports
  the median per variant — on a shared machine a load spike then hits one round of every
  variant instead of all runs of one. CUDA work is synchronised before each clock read.
* **Peak memory**: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the
  process's peak RSS inside a window (:func:`reset_peak_rss` / :func:`peak_rss`: Linux
  ``/proc/self/clear_refs`` ← 5 resets ``VmHWM`` to the current RSS; ``ru_maxrss`` elsewhere),
  run in a forked child (:func:`run_forked`) so one measurement cannot see another's peak.
* **Output difference**: :func:`difference` — max abs and PSNR between two outputs in model
  space [-1, 1] (PSNR on the [0, 1] range, as the images are written).
* **Random weights**: :func:`randomise` gives zero-initialised output layers (guided-diffusion's
  ``zero_module``) a non-zero init, so a network with random weights produces a non-trivial
  output whose numerics can be compared (speed never depends on the values).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import pickle
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Seconds of one call of ``fn`` (device work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    device: torch.device | str = "cpu",
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Seconds per call of every variant, ``repeats`` interleaved rounds after ``warmup``."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def _proc_status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def reset_peak_rss() -> tuple[float, str]:
    """Start a CPU peak-memory window; returns ``(baseline MiB, method)``.

    Linux: writing ``5`` to ``/proc/self/clear_refs`` resets the peak-RSS mark ``VmHWM`` to the
    current RSS, so the window's growth is ``VmHWM − VmRSS(now)`` — not masked by a higher peak
    before the window. Elsewhere: ``ru_maxrss``, which cannot be reset (growth beyond the earlier
    peak only).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_mib("VmRSS"), "VmHWM"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ru_maxrss"


def peak_rss(method: str) -> float:
    if method == "VmHWM":
        return _proc_status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def peak_memory(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, str]:
    """Peak memory (MiB) of one call of ``fn`` and what the number is (see module doc)."""
    device = torch.device(device)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_peak_above_start"
    base, method = reset_peak_rss()
    fn()
    return peak_rss(method) - base, f"cpu_peak_rss_growth ({method})"


def _child(conn, fn, args) -> None:
    # plain pickle: tensors travel by value (multiprocessing's pickler would pass them as
    # shared-memory handles that die with this process)
    try:
        conn.send_bytes(pickle.dumps(("ok", fn(*args))))
    except BaseException:  # report any failure to the parent instead of hanging it
        conn.send_bytes(pickle.dumps(("error", traceback.format_exc())))
    finally:
        conn.close()


def run_forked(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child (its own peak RSS); its picklable result comes back."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    child.close()
    try:
        status, payload = pickle.loads(parent.recv_bytes())
    except EOFError:
        proc.join()
        raise RuntimeError(f"{fn.__name__}{args!r:.80} died (exit code {proc.exitcode})") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed:\n{payload}")
    return payload


def difference(a: Tensor, b: Tensor) -> dict[str, float]:
    """Max abs difference (model space) and PSNR (dB, [0, 1] range) between two outputs."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    mse = ((a - b) / 2).pow(2).mean().item()
    return {
        "max_abs": (a - b).abs().max().item(),
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(1 / mse),
    }


def randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Re-initialise every all-zero conv/linear weight (guided-diffusion ``zero_module``) with
    its layer's default init, so random-weight networks have non-zero outputs."""
    torch.manual_seed(seed)
    for m in net.modules():
        w = getattr(m, "weight", None)
        zero = isinstance(w, Tensor) and not w.detach().any()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and zero:
            dtype = w.dtype
            m.float().reset_parameters()
            m.to(dtype)
    return net


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return (
        f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}"
    )
