"""Opt-in download of a registered prior: ``python -m lit_restore.priors.fetch NAME [--dir DIR]``.

The file is streamed to ``<target>.part`` with a tqdm progress bar, checked, then moved into
place with ``os.replace`` — an interrupted or failed download never leaves a file that looks
complete. Checks: the sha256 where one is published (none is, for the current entries), the
expected size where known, and always a strict load of the weights into the registered network
(which catches truncated or wrong files).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from lit_restore.priors.registry import (
    REGISTRY,
    REPO_ROOT,
    PriorEntry,
    build_prior,
    cache_dir,
    get_entry,
)


class FetchError(RuntimeError):
    """A download that failed its checks."""


def download(
    url: str,
    target: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> Path:
    """Stream ``url`` to ``target`` atomically, verifying ``size``/``sha256`` when given."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as resp, open(part, "wb") as f:
            total = resp.headers.get("Content-Length")
            bar = tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=target.name,
                disable=not progress,
            )
            with bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got_size = part.stat().st_size
        if size is not None and got_size != size:
            raise FetchError(f"{url}: got {got_size} bytes, expected {size}")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise FetchError(
                f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}"
            )
        os.replace(part, target)
    finally:
        if part.exists():
            part.unlink()
    return target


def fetch(
    name: str,
    directory: str | os.PathLike | None = None,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download registry entry ``name`` into ``directory`` (default: the cache dir) and verify it.

    ``url`` overrides the entry's URL (a mirror, or a ``file://`` URL in tests).
    """
    entry: PriorEntry = get_entry(name)
    if entry.shipped and url is None:  # committed with the repository: nothing to download
        shipped = REPO_ROOT / entry.shipped
        if not shipped.is_file():
            raise FetchError(
                f"{name} is shipped with the repository as {entry.shipped}, but {shipped} is "
                f"missing; restore it with `git checkout -- {entry.shipped}`."
            )
        return shipped
    if entry.manual and url is None:
        raise FetchError(
            f"{name} is hosted on a web page that cannot be fetched by script: download "
            f"{entry.file_name} from {entry.url} and save it as {cache_dir() / entry.file_name} "
            "(or pass --url with a direct mirror)."
        )
    target = Path(directory).expanduser() if directory else cache_dir()
    target = target / entry.file_name
    if target.is_file():
        return target
    download(url or entry.url, target, sha256=entry.sha256, size=entry.size, progress=progress)
    if entry.sha256 is None:  # no published hash: a strict load is our integrity check
        try:
            build_prior(entry, target)
        except Exception as err:
            target.unlink(missing_ok=True)
            raise FetchError(
                f"downloaded {entry.file_name} does not load into {entry.cls}: {err}"
            ) from err
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(REGISTRY))
    parser.add_argument("--dir", default=None, help=f"target directory (default {cache_dir()})")
    parser.add_argument(
        "--url", default=None, help="mirror URL to use instead of the registered one"
    )
    args = parser.parse_args(argv)
    try:
        path = fetch(args.name, args.dir, args.url)
    except (FetchError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
