"""The fingerprint of an evaluation: everything that determines its outputs, readable and hashed.

A run directory stores ``fingerprint_<stage>.json``::

    {"digest": "<sha256 of the parts>", "parts": {"model.sampler.scale": 0.3, ...}}

and a rerun into the same directory resumes only when its own parts are equal
(:mod:`lit_restore.evaluation.records`). The parts are flat ``section.path -> value`` entries:

* ``model.*`` / ``data.*``: the LightningModule and the datamodule **as built**, read from the
  objects themselves (:func:`describe`), so a value is caught however it was set — YAML, a
  command-line flag, Python, or a changed default: class names, and every public attribute of
  plain type (numbers, strings, booleans, paths, short lists), recursing into lit_restore objects
  and ``nn.Module`` children (the sampler, the prior, the operator, the noise model, the
  dataset). Long lists (a dataset's file list) are stored as ``list[n] <hash>``; tensors that are
  plain attributes as ``tensor[shape] <hash>``. Third-party objects (a diffusers network, a
  Hugging Face dataset) contribute their class (and a Hugging Face dataset its own
  ``_fingerprint``). Attributes that change resources and not results (batch sizes, workers,
  progress bars, counters) are left out (:data:`IGNORED`).
* ``model.weights``: a hash of the module's ``state_dict`` (every parameter and buffer: the
  frozen prior's weights, the operator's kernels), taken after Lightning restored any
  ``ckpt_path``.
* ``trainer.precision`` and ``seed`` (``seed_everything``).
* one section per evaluation callback that shapes the results (``metrics.*``: the metric
  options).

Not included, on purpose: the number of devices/ranks and the batch size (results do not depend
on them: per-image seeds, unpadded sharding) and the output options of the writers.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

# torch/numpy are imported inside the functions that need them: ``compare`` reads fingerprints
# (read, differences) without loading torch.

#: attribute names that do not change results (resources, progress display, run-time counters)
IGNORED = frozenset(
    {
        "training",  # nn.Module train/eval flag (evaluation always runs in eval mode)
        "trainer",
        "prepare_data_per_node",
        "allow_zero_length_dataloader_with_multiple_devices",
        "batch_size",
        "eval_batch_size",
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "progress",
        "step_progress",
        "nfe",
        "excluded",
        "cache",
        "max_pixels",  # a memory guard: which images are refused, not how any is restored
    }
)
#: top-level packages whose objects are recorded by class only (their internals are not ours)
OPAQUE_PACKAGES = frozenset(
    {
        "torch", "lightning", "pytorch_lightning", "torchvision", "torchmetrics", "numpy",
        "datasets", "diffusers", "transformers", "timm", "lpips", "PIL", "pyarrow",
        "huggingface_hub", "safetensors",
    }
)  # fmt: skip
#: lists longer than this are stored as their length and hash
LONG_LIST = 16
_PLAIN = (bool, int, float, str, type(None))


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_opaque(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] in OPAQUE_PACKAGES


def _plain(value: Any) -> Any:
    """A JSON value for ``value`` if it is plain data (None otherwise, meaning: describe it)."""
    import torch

    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (os.PathLike, enum.Enum, torch.dtype, torch.device)):
        return str(value)
    return None


def describe(obj: Any, prefix: str, out: dict[str, Any] | None = None, _seen=None) -> dict:
    """Flatten ``obj`` into ``{prefix.path: plain value}`` (see the module docstring)."""
    import numpy as np
    from torch import Tensor, nn

    out = {} if out is None else out
    seen: dict[int, str] = {} if _seen is None else _seen
    plain = _plain(obj)
    if plain is not None or obj is None:
        out[prefix] = plain
        return out
    if isinstance(obj, Tensor):
        out[prefix] = f"tensor{list(obj.shape)} {_hash(_tensor_bytes(obj))}"
        return out
    if isinstance(obj, np.ndarray):
        out[prefix] = f"array{list(obj.shape)} {_hash(np.ascontiguousarray(obj).tobytes())}"
        return out
    if isinstance(obj, (list, tuple)):
        values = [_plain(v) for v in obj]
        if all(v is not None or o is None for v, o in zip(values, obj)):
            if len(values) > LONG_LIST:
                out[prefix] = f"list[{len(values)}] {_hash(json.dumps(values).encode())}"
            else:
                out[prefix] = values
            return out
        for k, v in enumerate(obj):
            describe(v, f"{prefix}.{k}", out, seen)
        return out
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            describe(obj[k], f"{prefix}.{k}", out, seen)
        return out
    if inspect.isroutine(obj) or isinstance(obj, (type, functools.partial)):
        out[prefix] = getattr(obj, "__qualname__", None) or repr(obj)
        return out
    if id(obj) in seen:  # the same object again (e.g. test_set is predict_set): a reference
        out[prefix] = "@" + seen[id(obj)]
        return out
    seen[id(obj)] = prefix
    out[f"{prefix}.class"] = _class_path(obj)
    if _is_opaque(obj) and not isinstance(obj, nn.Module):
        if isinstance(getattr(obj, "_fingerprint", None), str):  # a Hugging Face dataset
            out[f"{prefix}.fingerprint"] = obj._fingerprint
        return out
    if not _is_opaque(obj):
        for name, value in vars(obj).items():
            if not name.startswith("_") and name not in IGNORED:
                describe(value, f"{prefix}.{name}", out, seen)
    if isinstance(obj, nn.Module):
        for name, child in obj.named_children():
            if name not in IGNORED:
                describe(child, f"{prefix}.{name}", out, seen)
    return out


def _tensor_bytes(t: Any) -> bytes:
    """The raw bytes of a tensor (any dtype, bf16 included; 0-d and empty too)."""
    import torch

    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def state_digest(module: nn.Module) -> str:
    """sha256 over every ``state_dict`` entry (name, dtype, shape and bytes)."""

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def digest(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """``"key a -> b, key2 (new) c, ... (n changes)"`` for the keys whose values differ."""
    changed = []
    for key in sorted(set(old) | set(new)):
        if key not in new:
            changed.append(f"{key} {_short(old[key])} -> (absent)")
        elif key not in old:
            changed.append(f"{key} (absent) -> {_short(new[key])}")
        elif old[key] != new[key]:
            changed.append(f"{key} {_short(old[key])} -> {_short(new[key])}")
    shown = ", ".join(changed[:limit])
    more = f", ... ({len(changed)} changes)" if len(changed) > limit else ""
    return shown + more


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def read(path: Path) -> dict[str, Any] | None:
    """The parts stored at ``path`` (``None`` if there is no readable fingerprint)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    parts = data.get("parts") if isinstance(data, dict) else None
    return parts if isinstance(parts, dict) else None


def to_json(parts: Mapping[str, Any]) -> str:
    return json.dumps({"digest": digest(parts), "parts": dict(parts)}, indent=1, sort_keys=True)
