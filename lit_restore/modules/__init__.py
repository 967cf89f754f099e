"""LightningModules: every restoration method shares :class:`RestorationModule`'s steps.

The classes load on first use (PEP 562): a zero-shot run never imports ResShift's networks and
timm, which cost about a tenth of ``sample.py``'s start-up (bench/README.md, "Start-up and suite
overhead").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lit_restore.modules.base import PseudoInverse, RestorationModule
    from lit_restore.modules.diffusion_prior import DiffusionPriorModule
    from lit_restore.modules.resshift import ResShiftModule
    from lit_restore.modules.sinsr import SinSRModule
    from lit_restore.modules.zero_shot import ZeroShotRestoration

#: public name -> the submodule that defines it
_HOMES = {
    "DiffusionPriorModule": "diffusion_prior",
    "PseudoInverse": "base",
    "ResShiftModule": "resshift",
    "RestorationModule": "base",
    "SinSRModule": "sinsr",
    "ZeroShotRestoration": "zero_shot",
}

__all__ = [
    "DiffusionPriorModule",
    "PseudoInverse",
    "ResShiftModule",
    "RestorationModule",
    "SinSRModule",
    "ZeroShotRestoration",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
