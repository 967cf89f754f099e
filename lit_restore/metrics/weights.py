"""Offline resolution of the pretrained weights behind LPIPS and FID.

Resolution order for each file (never a download):

1. an explicit path option (``lpips_weights`` / ``inception_weights``; must exist);
2. the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<file>`` (``torch.hub.get_dir()``), i.e.
   exactly where torchvision / torch-fidelity would have downloaded it;
3. ``$LIT_RESTORE_HOME/checkpoints/<file>`` (default ``~/.cache/lit_restore``).

Downloading is opt-in only: ``python -m lit_restore.metrics.weights alexnet vgg16 inception``
(:func:`download_weights`) fetches into the hub cache and checks the SHA-256 prefix that each
file name carries (``alexnet-owt-7be5be79`` → ``7be5be79``).

A missing file raises :class:`MissingWeightsError` naming the file, its public URL, where to
put it, and how to run without perceptual metrics. File names and URLs follow torchvision
(``AlexNet_Weights.IMAGENET1K_V1``, ``VGG16_Weights.IMAGENET1K_V1``) and torch-fidelity
(``feature_extractor_inceptionv3.py::URL_INCEPTION_V3``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class WeightFile:
    filename: str
    url: str
    purpose: str


WEIGHT_FILES: dict[str, WeightFile] = {
    "alexnet": WeightFile(
        "alexnet-owt-7be5be79.pth",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "LPIPS (net=alex) backbone: torchvision AlexNet ImageNet weights",
    ),
    "vgg16": WeightFile(
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "LPIPS (net=vgg) backbone: torchvision VGG16 ImageNet weights",
    ),
    "inception": WeightFile(
        "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
        "FID/KID feature extractor: TF-compatible InceptionV3 (torch-fidelity)",
    ),
}


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file needed by a perceptual metric is not available offline."""


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's own download cache; honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def lit_restore_checkpoint_dir() -> Path:
    home = os.environ.get("LIT_RESTORE_HOME", os.path.join("~", ".cache", "lit_restore"))
    return Path(home).expanduser() / "checkpoints"


def resolve_weights(key: str, path: str | os.PathLike | None = None, option: str = "") -> Path:
    """Return the local file for ``key`` (``alexnet``/``vgg16``/``inception``) or raise clearly.

    Args:
        key: entry of :data:`WEIGHT_FILES`.
        path: explicit file (the ``option`` the user set); must exist when given.
        option: the name of the option that would take ``path`` (for the error message).
    """
    if key not in WEIGHT_FILES:
        raise KeyError(f"unknown weight file {key!r}; known: {sorted(WEIGHT_FILES)}")
    spec = WEIGHT_FILES[key]
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(
                f"{option or 'weights path'}={str(path)!r} does not exist. It should be "
                f"{spec.filename} ({spec.purpose}), from {spec.url}."
            )
        return p
    candidates = [
        hub_checkpoint_dir() / spec.filename,
        lit_restore_checkpoint_dir() / spec.filename,
    ]
    for c in candidates:
        if c.is_file():
            return c
    opt = f" or pass its path as `{option}`" if option else ""
    raise MissingWeightsError(
        f"{spec.purpose}: weight file {spec.filename!r} not found (looked in "
        f"{', '.join(str(c.parent) for c in candidates)}). Nothing is downloaded implicitly: "
        f"fetch it from {spec.url} and put it in {candidates[0].parent}{opt} (or run "
        f"`python -m lit_restore.metrics.weights {key}` on a machine with network access). To run without "
        "perceptual metrics set `perceptual: false` (or `metrics: [psnr, ssim]` and `fid: false`)."
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a plain state dict safely (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download or a pickle that is not a state dict
        raise MissingWeightsError(
            f"{path} could not be read as a state dict ({err}); delete it and fetch it again."
        ) from err
    if not isinstance(state, dict):
        raise MissingWeightsError(f"{path} does not hold a state dict (got {type(state)}).")
    return state


def download_weights(key: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Explicit, opt-in download of one weight file into the hub cache (SHA-256 prefix checked)."""
    spec = WEIGHT_FILES[key]
    dest = Path(dest_dir) if dest_dir is not None else hub_checkpoint_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.filename
    if not target.is_file():
        hash_prefix = spec.filename.rsplit("-", 1)[-1].split(".")[0]
        torch.hub.download_url_to_file(spec.url, str(target), hash_prefix=hash_prefix)
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m lit_restore.metrics.weights [NAME ...] [--dir DIR]``: opt-in download."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lit_restore.metrics.weights",
        description="Download the LPIPS backbone / Inception weights into the torch hub cache "
        "($TORCH_HOME/hub/checkpoints) so metrics run offline afterwards. Nothing else in "
        "lit_restore downloads them.",
    )
    parser.add_argument("names", nargs="*", choices=[[], *sorted(WEIGHT_FILES)], metavar="NAME",
                        help=f"any of {sorted(WEIGHT_FILES)} (default: all)")  # fmt: skip
    parser.add_argument("--dir", default=None, help="target folder (default: the hub cache)")
    args = parser.parse_args(argv)
    for key in args.names or sorted(WEIGHT_FILES):
        print(download_weights(key, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
