"""Named presets in configs: ``init_args: {preset: NAME}`` stands for a published setting.

A class spec in any config (a ``--config`` file, a suite entry, a flag value) may name a preset
instead of spelling out its arguments::

    prior:   {class_path: lit_restore.priors.ADMPrior, init_args: {preset: adm-ffhq256-dps}}
    sampler: {class_path: lit_restore.samplers.DDPG, init_args: {preset: celebahq256_sr4_sigma0.05}}

When the config is read, ``preset`` is replaced by the preset's arguments; arguments written
beside it win, and so do later ``--config`` files and flags, value by value. The resolved config
(``--print_config``, the run's ``config.yaml``) therefore shows every value, not the name.

Where the presets live (one home each):

* samplers — :mod:`lit_restore.samplers.presets`, one table per method;
* priors — the registry of published checkpoints, :data:`lit_restore.priors.REGISTRY`: the preset
  of a registry name is its network flags plus ``checkpoint: <name>``.

:func:`install_loader` registers :func:`load_with_presets` as a jsonargparse loader (the CLI's
``parser_mode``), so expansion happens wherever jsonargparse reads YAML.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

#: the jsonargparse ``parser_mode`` whose loader expands presets
PARSER_MODE = "lit_restore"


class PresetError(Exception):
    """An unknown preset, or a preset on a class that has none (a user error, one line).

    Not a ``ValueError``: jsonargparse would fold it into a parse-failure dump.
    """


def unknown_name(owner: str, name: str, known: list[str]) -> str:
    """``unknown preset 'x' for Owner; did you mean 'y'? presets: ...``."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none"
    return f"unknown preset {name!r} for {owner}{hint} (its presets: {listing})"


def _import_class(class_path: str) -> type | None:
    """The class ``class_path`` names (a dotted path, or a bare name exported by
    ``lit_restore.samplers`` / ``lit_restore.priors``); ``None`` when it cannot be imported
    (jsonargparse then reports the bad class path itself)."""
    if "." in class_path:
        module, _, name = class_path.rpartition(".")
        candidates = [module]
    else:
        name, candidates = class_path, ["lit_restore.samplers", "lit_restore.priors"]
    for module in candidates:
        try:
            obj = getattr(importlib.import_module(module), name, None)
        except ImportError:
            obj = None
        if isinstance(obj, type):
            return obj
    return None


def preset_args(cls: type, name: str) -> dict[str, Any]:
    """The constructor arguments of preset ``name`` of ``cls`` (a sampler or a prior class)."""
    from lit_restore.priors.base import DiffusionPrior
    from lit_restore.samplers import presets as sampler_presets
    from lit_restore.samplers.base import Sampler

    if issubclass(cls, Sampler):
        table = sampler_presets.presets_of(cls)
        if name not in table:
            raise PresetError(unknown_name(cls.__name__, name, list(table)))
        return _plain(dict(table[name].args))  # a copy: lists too
    if issubclass(cls, DiffusionPrior):
        from lit_restore.priors.registry import REGISTRY, prior_class

        names = [n for n, e in REGISTRY.items() if prior_class(e.kind) is cls]
        if name not in names:
            raise PresetError(unknown_name(cls.__name__, name, names))
        return {**_plain(dict(REGISTRY[name].config)), "checkpoint": name}
    raise PresetError(
        f"{cls.__module__}.{cls.__name__} has no presets: 'preset' applies to samplers "
        "(lit_restore.samplers.presets) and registered priors (lit_restore.priors.REGISTRY)"
    )


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: jsonargparse loaders return YAML's basic types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def expand_presets(value: Any) -> Any:
    """``value`` with every ``{class_path: C, init_args: {preset: N, **rest}}`` replaced by
    ``{class_path: C, init_args: {**preset_args(C, N), **rest}}``, at any depth."""
    if isinstance(value, list):
        return [expand_presets(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: expand_presets(v) for k, v in value.items()}
    init = out.get("init_args")
    if isinstance(out.get("class_path"), str) and isinstance(init, Mapping) and "preset" in init:
        rest = {k: v for k, v in init.items() if k != "preset"}
        name = init["preset"]
        cls = _import_class(out["class_path"])
        if cls is None:
            raise PresetError(f"preset {name!r}: cannot import class_path {out['class_path']!r}")
        out["init_args"] = {**preset_args(cls, str(name)), **rest}
    return out


def load_with_presets(text: str) -> Any:
    """jsonargparse's YAML loader followed by :func:`expand_presets`."""
    from jsonargparse import get_loader

    return expand_presets(get_loader("yaml")(text))


def install_loader() -> str:
    """Register :func:`load_with_presets` for :data:`PARSER_MODE`; returns the mode name."""
    import yaml
    from jsonargparse import set_loader

    set_loader(PARSER_MODE, load_with_presets, exceptions=(yaml.YAMLError,))
    return PARSER_MODE
