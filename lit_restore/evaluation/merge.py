"""Merge the shards of a job array into one run: ``python -m lit_restore.evaluation.merge``.

``python -m lit_restore.evaluation.merge DIR [DIR ...] [--stage test] [--out DIR]``

A job array evaluates a dataset as N independent runs, ``data.init_args.shard: "i/N"``
(:class:`lit_restore.data.sharding.Shard`: the images whose dataset index ``k`` has
``k mod N == i``), into one shared run directory or into one directory each. Each shard's
records carry its tag (``per_image_<stage>.shard<i>of<N>.csv``, ``fingerprint_...``,
``summary_...``; :mod:`lit_restore.evaluation.records`). No shard talks to another; this tool
joins them afterwards:

1. finds the shards ``0 .. N-1`` in the given directories and refuses, naming them, shards that
   are missing, found twice, or not finished (no CSV yet, or part files of a killed run left:
   rerun that shard, it resumes);
2. checks that the shards' fingerprints agree (the shard is not part of a fingerprint; one line
   naming what differs otherwise: the shards were not made with the same settings);
3. checks that every row lies in its shard (``index mod N == i``) — the shards are then disjoint
   and, all N being present, cover the dataset;
4. writes into ``--out`` (default: the one directory all shards share) the run's
   ``per_image_<stage>.csv`` (rows by dataset index), ``summary_<stage>.json`` — computed by the
   function the metric callback uses (:func:`lit_restore.evaluation.metrics.summarize`), FID/KID
   from the stored per-image features — and the shards' ``fingerprint_<stage>.json``: what one
   unsharded run would have written, so ``compare`` reads the merged run like any
   other and an unsharded rerun into it finds every image done. Files of shard directories
   (restored PNGs, features, ...) are copied (hard-linked where possible) into ``--out``; stray
   temp files of killed shards are removed.

The per-image values and the summary's metrics are those of one unsharded run (per-image seeds:
an image's measurement and restoration do not depend on which job restored it); only the cost
columns (seconds, memory) are measured per job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_restore.evaluation import fingerprint
from lit_restore.evaluation.metrics import feature_path, summarize, write_summary
from lit_restore.metrics.registry import METRICS, MetricOptions
from lit_restore.utils.tables import (
    COST_COLUMNS,
    FLAG_COLUMNS,
    TEMP_SUFFIX,
    atomic_write_bytes,
    atomic_write_text,
    format_table,
    read_rows,
    rows_to_csv,
)

#: the hyper-parameter (``summary_<stage>.json``) that names the shard
SHARD_HPARAM = "data/shard"


class MergeError(ValueError):
    """The shards cannot be merged (missing, unfinished, or made with other settings)."""


@dataclass(frozen=True)
class ShardRun:
    """The records of shard ``index`` of ``count`` in ``run_dir``."""

    run_dir: Path
    index: int
    count: int
    stage: str

    @property
    def tag(self) -> str:
        return f"shard{self.index}of{self.count}"

    def file(self, stem: str, suffix: str) -> Path:
        return self.run_dir / f"{stem}_{self.stage}.{self.tag}{suffix}"

    def part_files(self) -> list[Path]:
        return sorted(self.run_dir.glob(f"per_image_{self.stage}.{self.tag}.rank*.part.csv"))

    def __str__(self) -> str:
        return f"shard {self.index}/{self.count} in {self.run_dir}"


def find_shards(dirs: list[Path], stage: str) -> list[ShardRun]:
    """Every shard of ``stage`` in ``dirs`` (by their fingerprint files), checked complete."""
    pattern = re.compile(rf"fingerprint_{re.escape(stage)}\.shard(\d+)of(\d+)\.json")
    found: dict[int, ShardRun] = {}
    counts: set[int] = set()
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a directory; pass the shards' run directories")
        for path in sorted(d.iterdir()):
            m = pattern.fullmatch(path.name)
            if m is None:
                continue
            shard = ShardRun(d, int(m.group(1)), int(m.group(2)), stage)
            counts.add(shard.count)
            if shard.index in found and found[shard.index].run_dir.resolve() != d.resolve():
                raise MergeError(f"{shard} is also in {found[shard.index].run_dir}; pass one")
            found[shard.index] = shard
    if not found:
        raise MergeError(
            f"no shard records (fingerprint_{stage}.shard<i>of<N>.json) in "
            f"{', '.join(map(str, dirs))}; pass the run directories of runs made with "
            "data.init_args.shard: i/N (or choose the stage with --stage)"
        )
    if len(counts) > 1:
        raise MergeError(f"the shards split the data into different counts {sorted(counts)}")
    count = counts.pop()
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise MergeError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} of {count} not found in "
            f"{', '.join(map(str, dirs))}: run them (--data.init_args.shard i/{count}) or pass "
            "their run directories"
        )
    shards = [found[i] for i in range(count)]
    for s in shards:
        if not s.file("per_image", ".csv").is_file() or s.part_files():
            raise MergeError(
                f"{s} is not finished (its run was stopped before the end): rerun it with the "
                "same command, it resumes where it stopped"
            )
    return shards


def check_fingerprints(shards: list[ShardRun]) -> dict:
    """The shards' common fingerprint; refuses shards made with other settings."""
    first: dict | None = None
    for s in shards:
        parts = fingerprint.read(s.file("fingerprint", ".json"))
        if parts is None:
            raise MergeError(f"{s}: its fingerprint file is unreadable; rerun that shard")
        if first is None:
            first = parts
        elif parts != first:
            raise MergeError(
                f"{shards[0]} and {s} were made with other settings: "
                f"{fingerprint.differences(first, parts)}; rerun the odd shard with the settings "
                "of the others"
            )
    assert first is not None
    return first


def read_shard_rows(shards: list[ShardRun]) -> tuple[list[str], list[dict]]:
    """The shards' CSV columns and their rows, by dataset index (checked to be in their shard)."""
    header: list[str] | None = None
    rows: dict[int, dict] = {}
    for s in shards:
        h, shard_rows = read_rows(s.file("per_image", ".csv"))
        if header is None:
            header = h
        elif h != header:
            raise MergeError(f"{s} has the CSV columns {h}, {shards[0]} has {header}")
        for r in shard_rows:
            i = int(r["index"])
            if i % s.count != s.index:
                raise MergeError(f"{s} holds image index {i}, which belongs to shard "
                                 f"{i % s.count}/{s.count}")  # fmt: skip
            rows[i] = r
    assert header is not None
    return header, [rows[i] for i in sorted(rows)]


def set_level_function(names: list[str]):
    """``set_level(fake, real)`` of the set-level metrics among the fingerprint's metric
    ``names`` (FID/KID from features: no network, no weights needed)."""
    specs = [s for s in METRICS.values() if s.kind == "set-level" and set(s.columns) & set(names)]
    functions = [s.build(MetricOptions()) for s in specs]

    def set_level(fake, real) -> dict[str, float]:
        out: dict[str, float] = {}
        for f in functions:
            out.update(f(fake, real))
        return out

    return set_level, bool(specs)


def _copy_outputs(shards: list[ShardRun], out: Path) -> int:
    """Copy the files under the shard dirs' sub-folders (images, features) into ``out``; hard
    links where the file system allows. Returns the number of files copied."""
    n = 0
    for s in shards:
        if s.run_dir.resolve() == out.resolve():
            continue
        for src in sorted(p for p in s.run_dir.rglob("*") if p.is_file()):
            rel = src.relative_to(s.run_dir)
            if len(rel.parts) < 2 or src.name.endswith(TEMP_SUFFIX):
                continue  # top-level files are the shard's own records/logs
            dst = out / rel
            if dst.is_file() and dst.read_bytes() == src.read_bytes():
                continue  # merged before
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link{TEMP_SUFFIX}")
            try:
                os.link(src, tmp)
                os.replace(tmp, dst)
            except OSError:
                tmp.unlink(missing_ok=True)
                atomic_write_bytes(dst, src.read_bytes())
            n += 1
    return n


def merge(dirs: list[Path], stage: str = "test", out: Path | None = None) -> dict:
    """Merge the shards of ``stage`` found in ``dirs`` into ``out`` (module docstring); returns
    the summary's metrics."""
    shards = find_shards(dirs, stage)
    parts = check_fingerprints(shards)
    header, rows = read_shard_rows(shards)
    run_dirs = list(dict.fromkeys(s.run_dir.resolve() for s in shards))
    if out is None:
        if len(run_dirs) > 1:
            raise MergeError(
                f"the shards are in {len(run_dirs)} directories; name the merged run's "
                "directory with --out DIR"
            )
        out = run_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    for d in run_dirs:  # every shard finished: temp files left are from killed runs
        for p in d.rglob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
    _copy_outputs(shards, out)

    names = parts.get("metrics.names") or []
    per_image = [c for c in header if c not in ("index", "name", *FLAG_COLUMNS, *COST_COLUMNS)]
    set_level, has_set_level = set_level_function(list(names))
    full_reference = [m for m in per_image if m in METRICS and METRICS[m].needs_reference]
    with_reference = (
        [
            r["index"]
            for r in rows
            if any(not np.isnan(r[m]) for m in full_reference)  # scored against a reference
        ]
        if has_set_level
        else []
    )
    feature_dir = {s.index: s.run_dir for s in shards}
    count = shards[0].count
    summary = summarize(
        rows,
        per_image,
        with_reference,
        lambda i: np.load(feature_path(feature_dir[i % count], i)),
        set_level,
    )
    first_summary = shards[0].file("summary", ".json")
    hparams = {}
    if first_summary.is_file():
        hparams = json.loads(first_summary.read_text()).get("hparams", {})
    hparams = {k: v for k, v in hparams.items() if k != "run"}  # the shard's logger version
    if SHARD_HPARAM in hparams:
        hparams[SHARD_HPARAM] = "None"  # as an unsharded run records it
    atomic_write_text(out / f"per_image_{stage}.csv", rows_to_csv(rows, header))
    write_summary(out / f"summary_{stage}.json", summary, hparams)
    atomic_write_text(out / f"fingerprint_{stage}.json", fingerprint.to_json(parts))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lit_restore.evaluation.merge",
        description="Merge the shards of a job array (runs made with data.init_args.shard: i/N) "
        "into one run: per-image CSV by index, summary (FID from the stored features), "
        "fingerprint.",
    )
    ap.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="the shards' run dirs")
    ap.add_argument("--stage", default="test", choices=["test", "predict"])
    ap.add_argument(
        "--out", type=Path, default=None, help="merged run dir (default: the shards' one dir)"
    )
    args = ap.parse_args(argv)
    summary = merge(args.dirs, args.stage, args.out)
    out = args.out or args.dirs[0]
    print(format_table(summary, f"{args.stage}: {int(summary['images'])} images merged → {out}"))
    return 0


if __name__ == "__main__":
    from lit_restore.utils.errors import report_user_errors

    sys.exit(report_user_errors(main))
