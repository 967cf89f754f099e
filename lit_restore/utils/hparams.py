"""A run's hyper-parameters: the init args a module was built with, flat, for every logger.

**Recording.** :func:`record_init_args` stores a LightningModule's (or LightningDataModule's)
init args as its ``hparams`` with Lightning's ``save_hyperparameters``. Under ``LightningCLI``
these are the *resolved config* of that class (``lightning/pytorch/cli.py``, ``_InstantiatorFn``
hands ``save_hyperparameters`` the dumped ``model``/``data`` section: nested
``class_path``/``init_args`` specs with every default filled in), so the sampler, prior, operator
and noise settings arrive as plain data. Built in Python, an argument that is an object (a
prior network, a dataset) is left out: checkpoints store ``hparams`` and load with
``weights_only=True``, which refuses pickled objects.

Lightning's automatic start-of-run ``log_hyperparams`` is switched off (``logger=False``): an
evaluation logs its hyper-parameters once, with its final metrics
(:class:`lit_restore.evaluation.RestorationMetrics` through
:func:`lit_restore.utils.loggers.log_hparams`); training logs them when fit starts. TensorBoard's HPARAMS plugin reads only the
*first* hyper-parameter session of a run (its event accumulator keeps the first summary metadata
of a tag), so an earlier call without the metrics would hide them.

**Flattening.** :func:`flatten` turns nested specs into ``{"model/sampler/scale": 0.3,
"model/sampler/class_path": "lit_restore.samplers.SaFaRI", ...}`` with scalar values (int, float,
bool, str; ``None`` and lists as their text), what every Lightning logger accepts
(TensorBoard, CSV, W&B, MLflow).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import Any

#: keys Lightning adds to a CLI-given config (not init args)
LIGHTNING_KEYS = frozenset({"_instantiator"})
#: scalar types a logger stores as they are
SCALARS = (bool, int, float, str)


def is_plain(value: Any) -> bool:
    """Plain data: scalars, ``None`` and (nested) lists/tuples/dicts of them."""
    if value is None or isinstance(value, SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def record_init_args(obj: Any, frame: types.FrameType | None = None) -> None:
    """``obj.save_hyperparameters`` of the calling ``__init__``'s plain arguments, not logged
    by Lightning at the start of a run (module docstring).

    Call it from ``__init__`` (``frame``: that ``__init__``'s frame; default the caller's)."""
    frame = frame if frame is not None else inspect.currentframe().f_back  # type: ignore[union-attr]
    assert frame is not None
    given = _cli_config()
    if given is not None:  # the CLI's resolved config of this class: plain unless linked objects
        values = dict(given)
    else:
        info = inspect.getargvalues(frame)
        names = [*info.args, *([info.keywords] if info.keywords else [])]
        values = {n: info.locals.get(n) for n in names if n != "self"}
    objects = [n for n, v in values.items() if not is_plain(v)]
    obj.save_hyperparameters(ignore=objects, frame=frame, logger=False)


def _cli_config() -> dict | None:
    """The config ``LightningCLI`` is instantiating the current class from (``None`` outside
    it). Lightning passes it to ``save_hyperparameters`` through a context variable of
    ``lightning.pytorch.core.mixins.hparams_mixin`` (set by ``lightning/pytorch/cli.py``)."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # a Lightning without it: the frame's arguments
        return None
    return _given_hyperparameters.get()


def flatten(value: Any, prefix: str, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{prefix/path: scalar}`` for a nested config (module docstring).

    A class spec ``{"class_path": P, "init_args": {...}}`` (or Lightning's
    ``{"_class_path": P, ...}``) gives ``prefix/class_path = P`` and its init args under
    ``prefix/``; ``dict_kwargs`` are merged like init args."""
    out = {} if out is None else out
    if isinstance(value, Mapping):
        spec = dict(value)
        if "_class_path" in spec:
            spec["class_path"] = spec.pop("_class_path")
        if "class_path" in spec:
            out[f"{prefix}/class_path"] = str(spec["class_path"])
            args = {**(spec.get("init_args") or {}), **(spec.get("dict_kwargs") or {})}
            rest = {
                k: v for k, v in spec.items() if k not in ("class_path", "init_args", "dict_kwargs")
            }
            spec = {**rest, **args}
        for k in sorted(spec, key=str):
            if k not in LIGHTNING_KEYS:
                flatten(spec[k], f"{prefix}/{k}", out)
        return out
    out[prefix] = scalar(value)
    return out


def scalar(value: Any) -> bool | int | float | str:
    """A value every logger stores: scalars as they are, anything else as its text."""
    if isinstance(value, SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(scalar(v)) for v in value) + "]"
    return str(value)


def run_hparams(trainer: Any) -> dict[str, bool | int | float | str]:
    """The flat hyper-parameters of ``trainer``'s run.

    * ``run``: the logger's ``name/version``;
    * the module's summary (``pl_module.run_hparams()``: ``method``, ``steps``, ``prior``, ...,
      what tables and figures label a run with);
    * ``model/...`` and ``data/...``: the module's and datamodule's recorded init args
      (:func:`record_init_args`; under the CLI the resolved config: prior, sampler, operator,
      noise, dataset, crop, seeds);
    * ``data/operator/class_path`` / ``data/noise/sigma`` from the datamodule's objects when the
      datamodule was built in Python (its objects are not recorded).
    """
    module, dm = trainer.lightning_module, trainer.datamodule
    hp: dict[str, Any] = {}
    name = run_name(trainer)
    if name is not None:
        hp["run"] = name
    if hasattr(module, "run_hparams"):
        hp.update({k: scalar(v) for k, v in module.run_hparams().items()})
    for prefix, obj in (("model", module), ("data", dm)):
        recorded = getattr(obj, "hparams_initial", None) if obj is not None else None
        if recorded:
            flatten({"_class_path": _class_path(obj), **recorded}, prefix, hp)
    for name in ("operator", "noise"):
        thing = getattr(dm, name, None) if dm is not None else None
        if thing is not None and f"data/{name}/class_path" not in hp:
            hp[f"data/{name}/class_path"] = _class_path(thing)
            if name == "noise" and hasattr(thing, "sigma"):
                hp["data/noise/sigma"] = float(thing.sigma)
    return hp


def run_name(trainer: Any) -> str | None:
    """The run as its logger names it: ``name/version`` (``version_<n>`` for a number)."""
    logger = trainer.logger
    if logger is None:
        return None
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return f"{logger.name}/{version}" if logger.name else version


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
