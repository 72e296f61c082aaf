"""Which studies exist, in report order, and how to load them lazily.

A study named ``NAME`` lives in the module ``ntk_limits_experiments.NAME.study`` and exposes a
module-level ``STUDY`` (:class:`ntk_limits_experiments.study.Study`) with ``STUDY.name == NAME``.
Modules are imported only when a study is loaded, so ``ntk-limits --help`` stays fast.
A study whose module does not exist yet is *not built*: :func:`load` returns None.

Tests and plugins can add studies without editing this file through the environment
variable ``NTK_LIMITS_EXTRA_STUDIES``: a comma-separated list of ``module:attr`` naming
``Study`` objects (e.g. ``tests.experiments.toy_study:STUDY``). They come after the
built-in studies. Only the registry reads this variable.
"""

import importlib
import importlib.util
import os

from ntk_limits_experiments.study import Study

__all__ = [
    "EXTRA_STUDIES_ENV",
    "STUDIES",
    "extra_studies",
    "is_built",
    "load",
    "module_name",
    "names",
]

STUDIES = ("kernels", "teaser", "optimization", "bandits", "continual")  # report order
EXTRA_STUDIES_ENV = "NTK_LIMITS_EXTRA_STUDIES"


def module_name(name: str) -> str:
    """Returns the module that must define the study ``name``: ``<package>.NAME.study``."""
    return f"ntk_limits_experiments.{name}.study"


def extra_studies() -> dict[str, Study]:
    """Returns the studies named in ``$NTK_LIMITS_EXTRA_STUDIES`` (for tests and plugins).

    Raises:
      ValueError: an entry is not ``module:attr``, does not name a ``Study``, or reuses
        a built-in study name.
    """
    found: dict[str, Study] = {}
    for entry in filter(
        None, (e.strip() for e in os.environ.get(EXTRA_STUDIES_ENV, "").split(","))
    ):
        modname, _, attr = entry.partition(":")
        if not modname or not attr:
            raise ValueError(f"{EXTRA_STUDIES_ENV} entry {entry!r} is not module:attr")
        study = getattr(importlib.import_module(modname), attr, None)
        if not isinstance(study, Study):
            raise ValueError(f"{EXTRA_STUDIES_ENV} entry {entry!r} is not a Study")
        if study.name in STUDIES:
            raise ValueError(f"{EXTRA_STUDIES_ENV} study {study.name!r} reuses a built-in name")
        found[study.name] = study
    return found


def names() -> list[str]:
    """Returns every known study name: built-in ones in report order, then extra ones."""
    return [*STUDIES, *extra_studies()]


def load(name: str) -> Study | None:
    """Imports and returns the study ``name``; None when its module is not built yet.

    Args:
      name: a study name from :func:`names`.

    Returns:
      The module's ``STUDY``, or None when ``ntk_limits_experiments.NAME.study`` (or its package)
      does not exist. Any other import error propagates.

    Raises:
      ValueError: ``name`` is not a known study.
    """
    extras = extra_studies()
    if name in extras:
        return extras[name]
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; allowed: {', '.join([*STUDIES, *extras])}")
    modname = module_name(name)
    try:
        module = importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name in (modname, f"ntk_limits_experiments.{name}"):
            return None
        raise
    study = module.STUDY
    if study.name != name:
        raise RuntimeError(f"{modname}.STUDY.name is {study.name!r}, expected {name!r}")
    return study


def is_built(name: str) -> bool:
    """Whether the module of built-in study ``name`` exists (imports only its package)."""
    try:
        return importlib.util.find_spec(module_name(name)) is not None
    except ModuleNotFoundError:
        return False
