"""How a network runs: numeric precision, ``torch.compile`` and the channels-last memory format.

One set of options for every model (:class:`~lit_restore.modules.ZeroShotRestoration`,
:class:`~lit_restore.modules.ResShiftModule`): they change *how* the network is evaluated, never
*what* a method computes, and each has a measured output difference against plain float32
(``bench/bench_runtime.py``, tables in ``bench/README.md``).

**Precision** (``precision: fp32 | bf16 | auto``). ``bf16`` evaluates the *network* in bfloat16:
a prior with a bfloat16 torso (:meth:`~lit_restore.priors.base.DiffusionPrior.set_torso_dtype`;
the ADM UNet, whose GroupNorms, time-embedding MLP and output head stay float32, as
guided-diffusion's ``convert_to_fp16`` does) gets that torso, every other network runs under
``torch.autocast(bfloat16)``. The guidance maths (operators, norms, gradients' use, schedules)
stays float32: the autocast region is the network call only. ``auto`` is bfloat16 on a CUDA
device for the methods whose measured bf16 output is within :data:`BF16_AUTO_BOUND_DB` of the
float32 output (:data:`BF16_PSNR_DB`), and float32 everywhere else — on CPUs without native
bfloat16 (no AVX-512-BF16/AMX) bf16 convolutions are *slower* than float32.

**Compile** (``compile: false | true | default | reduce-overhead | max-autotune``).
``nn.Module.compile`` of the network (parameter names unchanged, so checkpoints still load) with
``dynamic=False``: one graph per input shape, i.e. one compilation per run when the batch shape
is fixed (a smaller last batch compiles once more). ``reduce-overhead`` adds CUDA graphs, which
need static shapes and a CUDA device; on another device it falls back to ``default`` with a
warning. The default is ``false``, and there is deliberately no ``auto``: on a CPU inductor
builds every generated kernel with g++ before the first call — measured 2802 s for the small
ADM of ``bench/bench_runtime.py`` on a loaded 2-core machine against a saving of 0.19 s per
guided step (1.20×), and 800 s against 0.054 s per forward-only step (2.28×): either is repaid
after ≈ 15 000 network calls (``bench/README.md``, "Compile on
CPU"), far more than a demo-sized run makes; on a GPU the choice is a measurement of
``bench/run_gpu.py``.

**Channels-last** (``channels_last: true``): the network's 4-D weights in NHWC order, so its
convolutions run in the layout cuDNN / oneDNN prefer (the input follows the weights).

**Threads** (``threads: N``, a top-level option of ``sample.py`` / ``train.py``): the number of
CPU threads of torch's intra-op pool for the run (:func:`cpu_threads`), ``null`` = torch's
default (one per core). Small networks on small images gain little from more threads while each
operation pays their synchronisation; on a shared or loaded machine that cost dominates (the main
job on 2 cores: 5 min 33 s with 2 threads, 2 min 18 s with 1; bench/README.md).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "auto")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
#: ``torch.compile`` backend (tests swap in ``aot_eager``: inductor's C++ build takes minutes on
#: a small CPU); ``mode`` applies to inductor only.
COMPILE_BACKEND = "inductor"

#: PSNR (dB) between a method's bf16 and float32 outputs on the same inputs and noise, measured
#: by ``bench/bench_runtime.py`` (2 demo images, SR×4 + σ 0.025, 20 steps, the ADM FFHQ topology
#: at 32 px trained briefly on dead leaves; ResShift: a small topology of the released kind with
#: random weights; CPU bf16; table in ``bench/README.md``). Methods
#: absent here have not been measured and stay float32 under ``auto``.
BF16_PSNR_DB: dict[str, float] = {
    "safari": 61.0,
    "dps": 58.5,
    "ddnm": 62.7,
    "ddrm": 62.8,
    "ddpg": 61.8,
    "idpg": 45.7,
    "fdgr": 54.0,
    "resshift": 39.0,  # small topology with random weights; below the bound: auto stays fp32
}

#: ``auto`` selects bfloat16 on CUDA only for methods with ``BF16_PSNR_DB ≥`` this bound: 40 dB
#: is a mean absolute deviation of about 1/255 on [0, 1] images (RMS 0.01 on [0, 1] = 40 dB),
#: below the quantisation step of the 8-bit PNGs the results are written to.
BF16_AUTO_BOUND_DB = 40.0


def check_precision(precision: str, option: str = "precision") -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"{option}={precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(
    precision: str, device: torch.device | str, method: str
) -> torch.dtype | None:
    """``torch.bfloat16`` when the network should run in bf16 on ``device``, else ``None``."""
    check_precision(precision)
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        measured = BF16_PSNR_DB.get(method)
        if (
            torch.device(device).type == "cuda"
            and measured is not None
            and measured >= BF16_AUTO_BOUND_DB
        ):
            return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device | str) -> Iterator[None]:
    """Exactly this precision on ``device``'s type: ``torch.autocast(dtype)``, or autocast
    *disabled* when ``dtype`` is None — so an enclosing autocast (a Trainer with
    ``precision: bf16-mixed``) cannot reach code the flag keeps in float32."""
    device_type = torch.device(device).type
    if dtype is None:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
        return
    with torch.autocast(device_type=device_type, dtype=dtype):
        yield


def compile_mode(compile: bool | str, device: torch.device | str) -> str | None:
    """The ``torch.compile`` mode for the flag (``None`` = do not compile)."""
    if compile is False or compile in ("false", "off", "none", None):
        return None
    mode = "default" if compile is True or compile in ("true", "on") else compile
    if mode not in COMPILE_MODES:
        raise ValueError(
            f"compile={compile!r}: choose false, true or one of {', '.join(COMPILE_MODES)}"
        )
    if mode == "reduce-overhead" and torch.device(device).type != "cuda":
        warnings.warn(
            "compile='reduce-overhead' uses CUDA graphs, which need a CUDA device; "
            f"compiling with mode='default' on {torch.device(device).type}",
            stacklevel=2,
        )
        mode = "default"
    return mode


def prepare_network(
    net: nn.Module,
    device: torch.device | str,
    *,
    compile: bool | str = False,
    channels_last: bool = False,
) -> None:
    """Apply ``channels_last`` and ``compile`` to ``net`` in place (idempotent)."""
    if channels_last:
        net.to(memory_format=torch.channels_last)
    mode = compile_mode(compile, device)
    if mode is not None and getattr(net, "_compiled_call_impl", None) is None:
        inductor = COMPILE_BACKEND == "inductor"
        net.compile(backend=COMPILE_BACKEND, mode=mode if inductor else None, dynamic=False)


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)`` and restore the previous count after
    it (a suite's runs share one process; a test must not leave the pool changed). ``None``:
    leave the count as it is."""
    if threads is None:
        yield
        return
    if int(threads) < 1:
        raise ValueError(f"a number of CPU threads ≥ 1 (or null), got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
