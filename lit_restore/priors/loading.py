"""Safe checkpoint loading for priors.

* ``.safetensors`` → :func:`safetensors.torch.load_file`; anything else →
  ``torch.load(weights_only=True)``. A file that needs pickled code to load (an ``UnpicklingError``
  under ``weights_only``) is refused: executing code from a downloaded file is how a checkpoint
  takes over a machine. The error says how to convert such a file once, in an environment you
  trust.
* The state dict is found inside the common containers: a bare state dict, ``{"state_dict": …}``
  (Lightning; its ``state_dict`` already holds the EMA weights when
  :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` was used), ``{"ema": …}``,
  ``{"model": …}``, ``{"params_ema": …}`` (BasicSR), or a container named by the caller. Leading ``module.`` (DDP/DataParallel) and ``_orig_mod.`` (``torch.compile``)
  prefixes are stripped; a ``prefix`` (e.g. ``net.`` for our :class:`DiffusionPriorModule`)
  selects a sub-module.
* Used by the priors and by ResShift (:func:`lit_restore.resshift.unet.load_state_dict_file`).
* Loading is strict, with a readable diff of missing/unexpected/mismatched keys.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

STRIP_PREFIXES = ("module.", "_orig_mod.")
STATE_DICT_CONTAINERS = ("state_dict", "ema", "model_ema", "model", "params_ema")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (unsafe, corrupt, or for another network)."""


def read_checkpoint(path: str | Path, hint: str = "") -> Any:
    """Load a checkpoint file without executing code from it.

    Args:
        path: ``.safetensors`` or a ``torch.save`` file.
        hint: appended to the error when the file is missing (where to get it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} not found" + (f"; {hint}" if hint else "")
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {str(path)!r}: it contains pickled Python objects beyond tensors, and "
            "loading it would execute code from the file (torch.load weights_only=True failed: "
            f"{str(err).splitlines()[0]}). If you trust the file, convert it once to a plain state "
            "dict, e.g.\n  python -c \"import torch; ck = torch.load('IN', weights_only=False); "
            "sd = ck.get('state_dict', ck); torch.save({k: v for k, v in sd.items() if "
            "isinstance(v, torch.Tensor)}, 'OUT.pt')\"\nor save it as .safetensors, and load that."
        ) from err


def strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop leading ``module.`` (DDP/DataParallel) and ``_orig_mod.`` (``torch.compile``) from
    every key, in any order and repetition."""
    out: dict[str, Any] = {}
    for name, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in STRIP_PREFIXES:
                if name.startswith(p):
                    name, changed = name[len(p) :], True
        out[name] = value
    return out


def extract_state_dict(
    obj: Any, prefix: str | None = None, key: str | None = None
) -> dict[str, Tensor]:
    """Find the tensor state dict inside a checkpoint object and normalise its key names.

    Args:
        obj: what :func:`read_checkpoint` returned.
        prefix: keep only keys under this sub-module prefix (stripped), e.g. ``"net."``.
        key: container to look in first (before :data:`STATE_DICT_CONTAINERS`).
    """
    sd: Any = obj
    if isinstance(sd, Mapping):
        for name in (key, *STATE_DICT_CONTAINERS):
            if name and name in sd and isinstance(sd[name], Mapping):
                sd = sd[name]
                break
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(
            "checkpoint holds no state dict (expected a mapping of names to tensors)"
        )
    out = strip_prefixes({k: v for k, v in sd.items() if isinstance(v, Tensor)})
    if prefix:
        sub = {k[len(prefix) :]: v for k, v in out.items() if k.startswith(prefix)}
        if not sub:
            raise CheckpointError(f"no key starts with {prefix!r} (first keys: {list(out)[:3]})")
        out = sub
    return out


def state_dict_diff(model: nn.Module, sd: Mapping[str, Tensor], show: int = 5) -> str:
    """Human-readable difference between a model's state dict and ``sd`` ('' when they match)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", mismatched),
    ):
        if items:
            more = f" … (+{len(items) - show} more)" if len(items) > show else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:show])}{more}")
    return "; ".join(parts)


def load_state_dict_strict(
    model: nn.Module, sd: Mapping[str, Tensor], source: str = "checkpoint"
) -> None:
    """``model.load_state_dict(sd, strict=True)`` with one readable error on any difference."""
    diff = state_dict_diff(model, sd)
    if diff:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: {diff}. Check the network flags "
            "(num_channels, num_res_blocks, attention_resolutions, learn_sigma, …) against the "
            "checkpoint's published configuration."
        )
    own = model.state_dict()
    # cast to each parameter's own dtype so that a fp16 torso keeps its dtype
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def load_weights(model: nn.Module, path: str | Path, prefix: str | None = None) -> nn.Module:
    """Read ``path`` safely and load it strictly into ``model``."""
    obj = read_checkpoint(path)
    if prefix is None and isinstance(obj, Mapping) and "hyper_parameters" in obj:
        prefix = "net."  # a checkpoint of our DiffusionPriorModule
    load_state_dict_strict(
        model, extract_state_dict(obj, prefix), source=f"checkpoint {str(path)!r}"
    )
    return model
