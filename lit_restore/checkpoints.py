"""Reading checkpoints safely: one reader for priors, ResShift, the VQ autoencoder and metric
weights.

* **Safe.** ``.safetensors`` → :func:`safetensors.torch.load_file`; anything else →
  ``torch.load(weights_only=True)``. A file that needs pickled code to load (an ``UnpicklingError``
  under ``weights_only``) is refused: executing code from a downloaded file is how a checkpoint
  takes over a machine. The error says how to convert such a file once, in an environment you
  trust.
* **Named errors.** Every failure is one :class:`CheckpointError` line naming the file and what
  is wrong: empty, not a checkpoint at all (a text or HTML file — what a failed download often
  saves), a truncated or corrupt archive, pickled code, no state dict inside, or a state dict for
  another network (a readable diff of missing / unexpected / mis-shaped keys). The format is
  sniffed from the first bytes before ``torch.load`` sees the file, because ``torch.load`` reports
  a text file as ``KeyError`` or ``IndexError`` without the file name.
* **Containers.** The state dict is found inside the common containers: a bare state dict,
  ``{"state_dict": …}`` (Lightning; its ``state_dict`` already holds the EMA weights when
  :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` was used), ``{"ema": …}``,
  ``{"model_ema": …}``, ``{"model": …}``, ``{"params_ema": …}`` (BasicSR), or a container named by
  the caller.
* **Prefixes.** Leading ``module.`` (DDP/DataParallel) and ``_orig_mod.`` (``torch.compile``) are
  stripped; a ``prefix`` (e.g. ``net.`` for :class:`~lit_restore.modules.DiffusionPriorModule`)
  selects a sub-module.
* **Strict loading** with one readable error on any difference.
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

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
_PICKLE_PROTO = b"\x80"  # torch.save(_use_new_zipfile_serialization=False): a pickle stream


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (unsafe, corrupt, or for another network)."""


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header starting ``{``."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _describe(head: bytes) -> str:
    shown = head[:24]
    if shown and all(32 <= b < 127 or b in (9, 10, 13) for b in shown):
        return f"it is a text file starting {shown.decode('ascii')!r}"
    return f"it starts with the bytes {shown!r}"


def read_checkpoint(path: str | Path, hint: str = "", mmap: bool = False) -> Any:
    """Load a checkpoint file without executing code from it.

    Args:
        path: ``.safetensors`` or a ``torch.save`` file.
        hint: appended to the error when the file is missing (where to get it).
        mmap: memory-map a zip-format file instead of reading it (a cheap integrity check of a
            multi-GB file).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: empty, not a checkpoint, truncated/corrupt, or pickled code.
    """
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {name} not found" + (f"; {hint}" if hint else ""))
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {name} is empty (0 bytes), e.g. an interrupted download or copy; "
            "delete it and fetch it again"
        )
    with open(path, "rb") as f:
        head = f.read(64)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head, size):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {name} is not a readable safetensors file ({_first_line(err)}); it is "
                "probably truncated: delete it and fetch it again"
            ) from err
    is_zip = head.startswith(_ZIP_MAGIC)
    if not is_zip and not head.startswith(_PICKLE_PROTO):
        raise CheckpointError(
            f"checkpoint {name} is not a checkpoint: {_describe(head)}, neither a torch.save file "
            "nor safetensors (a failed download often saves an HTML or error page); delete it "
            "and fetch it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise CheckpointError(
                f"checkpoint {name} is corrupt ({_first_line(err)}); delete it and fetch it again"
            ) from err
        raise CheckpointError(
            f"refusing to load {name}: it contains pickled Python objects beyond tensors, and "
            "loading it would execute code from the file (torch.load weights_only=True failed: "
            f"{_first_line(err)}). If you trust the file, convert it once to a plain state dict, "
            "e.g. python -c \"import torch; ck = torch.load('IN', weights_only=False); "
            "sd = ck.get('state_dict', ck); torch.save({k: v for k, v in sd.items() if "
            "isinstance(v, torch.Tensor)}, 'OUT.pt')\", or save it as .safetensors, and load that."
        ) from err
    except Exception as err:  # RuntimeError (zip reader), EOFError, ... from a damaged file
        kind = "zip archive" if is_zip else "pickle stream"
        raise CheckpointError(
            f"checkpoint {name} is truncated or corrupt (not a complete torch.save {kind}: "
            f"{_first_line(err)}); delete it and fetch it again"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


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
    obj: Any, prefix: str | None = None, key: str | None = None, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Find the tensor state dict inside a checkpoint object and normalise its key names.

    Args:
        obj: what :func:`read_checkpoint` returned.
        prefix: keep only keys under this sub-module prefix (stripped), e.g. ``"net."``.
        key: container to look in first (before :data:`STATE_DICT_CONTAINERS`).
        source: how errors name the checkpoint (e.g. ``checkpoint '/path/file.pt'``).
    """
    sd: Any = obj
    if isinstance(sd, Mapping):
        for name in (key, *STATE_DICT_CONTAINERS):
            if name and name in sd and isinstance(sd[name], Mapping):
                sd = sd[name]
                break
    tensors = (
        {k: v for k, v in sd.items() if isinstance(v, Tensor)} if isinstance(sd, Mapping) else {}
    )
    if not tensors:
        found = (
            f"a mapping with keys {sorted(map(str, sd))[:5]}"
            if isinstance(sd, Mapping) and sd
            else f"an empty {type(sd).__name__}"
            if isinstance(sd, (Mapping, list, tuple))
            else f"a {type(sd).__name__}"
        )
        raise CheckpointError(
            f"{source} holds no state dict: expected a mapping of names to tensors (bare or under "
            f"one of {', '.join(STATE_DICT_CONTAINERS)}), found {found}"
        )
    out = strip_prefixes(tensors)
    if prefix:
        sub = {k[len(prefix) :]: v for k, v in out.items() if k.startswith(prefix)}
        if not sub:
            raise CheckpointError(
                f"{source}: no key starts with {prefix!r} (first keys: {list(out)[:3]})"
            )
        out = sub
    return out


def read_state_dict(
    path: str | Path, key: str | None = None, prefix: str | None = None, hint: str = ""
) -> dict[str, Tensor]:
    """:func:`read_checkpoint` + :func:`extract_state_dict`: the tensors of ``path``, safely read,
    with container and prefixes resolved (ResShift releases, the VQ autoencoder, metric
    backbones)."""
    obj = read_checkpoint(path, hint=hint)
    return extract_state_dict(obj, prefix, key, source=f"checkpoint {str(path)!r}")


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
    """Read ``path`` safely and load it strictly into ``model``; a Lightning checkpoint of
    :class:`~lit_restore.modules.DiffusionPriorModule` (it has ``hyper_parameters``) is read
    under its ``net.`` prefix."""
    obj = read_checkpoint(path)
    if prefix is None and isinstance(obj, Mapping) and "hyper_parameters" in obj:
        prefix = "net."
    source = f"checkpoint {str(path)!r}"
    load_state_dict_strict(model, extract_state_dict(obj, prefix, source=source), source)
    return model


def check_readable(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` reads as a checkpoint holding a state dict
    (memory-mapped where possible, so a multi-GB file costs little). Used on fresh downloads and
    on ``--ckpt_path`` before Lightning opens it."""
    extract_state_dict(read_checkpoint(path, mmap=True), source=f"checkpoint {str(path)!r}")
