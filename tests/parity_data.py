"""Reading the parity fixtures of ``tests/data/parity`` (written by
``scripts/make_parity_fixtures.py`` from the official repositories: numbers only, a JSON ``meta``
per file) and regenerating the noise streams they record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data" / "parity"


def load(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` of ``tests/data/parity/<name>.npz``."""
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def tensor(a: np.ndarray) -> torch.Tensor:
    """An array as a tensor (float16 weights, stored exactly, as float32)."""
    t = torch.from_numpy(np.array(a))
    return t.float() if t.dtype == torch.float16 else t


def state_dict(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The ``state_dict/<key>`` arrays of a network fixture."""
    return {k.split("/", 1)[1]: tensor(v) for k, v in arrays.items() if k.startswith("state_dict/")}


def official_noise(meta: dict, shapes: np.ndarray) -> list[torch.Tensor]:
    """The noise the official code consumed, in call order: ``numpy.random.RandomState(seed)
    .standard_normal`` blocks of the recorded shapes (NumPy keeps this stream fixed), checked
    against the fixture's SHA-256 of the stream."""
    rs = np.random.RandomState(meta["noise"]["seed"])
    digest = hashlib.sha256()
    out = []
    for row in shapes:
        block = rs.standard_normal(tuple(int(v) for v in row[1 : 1 + row[0]])).astype(np.float32)
        digest.update(block.tobytes())
        out.append(torch.from_numpy(block))
    assert digest.hexdigest() == meta["noise"]["sha256"], "noise stream differs from the fixture"
    return out


def max_abs(a: torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    b = tensor(b) if isinstance(b, np.ndarray) else b
    assert tuple(a.shape) == tuple(b.shape), (a.shape, b.shape)
    return float((a.detach().double() - b.double()).abs().max())
