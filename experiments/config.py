"""Typed, frozen study configs: profiles are values, overrides are coerced by field type.

A study's config is a frozen dataclass deriving from :class:`Config`. Its annotations
are the schema: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]`` (a choice),
``X | None`` and ``tuple[X, ...]``; bounds go into :func:`field`. Constructing a config
(directly, from a profile, or by :func:`apply_overrides`) checks every field against its
annotation and bounds and then calls the class's :meth:`Config.check` for rules between
fields, so an invalid config cannot exist. Errors are one line, ``what; allowed: ...``.
Configs are hashable and can key a cache; :func:`to_dict` gives their JSON form.

Example::

    @dataclasses.dataclass(frozen=True)
    class MyConfig(Config):
        widths: tuple[int, ...] = field((8, 16), ge=1, nonempty=True, distinct=True)
        lr: float = field(0.1, gt=0)
        solver: Literal["cg", "cholesky"] = "cg"

    config = apply_overrides(MyConfig(), ["widths=4,8", "solver=cholesky"])
"""

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = [
    "MAX_DEPTH",
    "MAX_INT",
    "MAX_WIDTH",
    "PROFILES",
    "Config",
    "apply_overrides",
    "field",
    "profiles",
    "settable",
    "to_dict",
]

PROFILES = ("smoke", "embedded", "paper")  # the one definition of the profile names
MAX_INT = 2**62  # every int field: beyond it NumPy/XLA overflow (a C long) inside a run
MAX_WIDTH = 2**20  # widths and width multipliers: 4x the paper's widest, far past memory
MAX_DEPTH = 1000  # depths: building a deeper network to check its memory takes minutes

_BOUNDS = ("ge", "gt", "le", "lt")
_PLURAL = {int: "integers", float: "finite numbers", bool: "booleans", str: "strings"}
_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def field(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    nonempty: bool = False,
    distinct: bool = False,
    doc: str = "",
) -> Any:
    """A config field with bounds (each number, or each element of a tuple).

    Args:
      default: the default value (tuples for sequences).
      ge: lower bound, inclusive; ``gt`` exclusive.
      gt: see ``ge``.
      le: upper bound, inclusive; ``lt`` exclusive.
      lt: see ``le``.
      nonempty: a tuple must have at least one element.
      distinct: a tuple's elements must differ.
      doc: one line on what the field means.

    Returns:
      A ``dataclasses.field`` carrying the bounds in its metadata.
    """
    meta = dict(ge=ge, gt=gt, le=le, lt=lt, nonempty=nonempty, distinct=distinct, doc=doc)
    return dataclasses.field(default=default, metadata=meta)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _describe(inner[0]) + " or none"
    if origin is tuple:
        if typing.get_origin(args[0]) is Literal:
            return "a list of " + ", ".join(map(str, typing.get_args(args[0])))
        return "a list of " + _PLURAL[args[0]]
    return {int: "an integer", float: "a finite number", bool: "a boolean", str: "a string"}[tp]


def _bounds(meta: Mapping[str, Any]) -> str:
    shown = lambda v: str(v) if isinstance(v, int) else f"{v:g}"
    return " and".join(
        f" {_BOUND_TEXT[b]} {shown(meta[b])}" for b in _BOUNDS if meta.get(b) is not None
    )


def _invalid(name: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> ValueError:
    shown = list(value) if isinstance(value, tuple) else value
    if typing.get_origin(tp) is Literal:
        return ValueError(
            f"{name} is {shown!r}; allowed: {', '.join(map(str, typing.get_args(tp)))}"
        )
    what, bounds = _describe(tp), _bounds(meta)
    values = value if isinstance(value, tuple) else (value,)
    huge = [v for v in values if isinstance(v, int) and abs(v) > MAX_INT]
    if huge and meta.get("le") is None:
        bounds += (" and" if bounds else "") + " of magnitude <= 2**62"
    if bounds:
        what += ", each" + bounds if typing.get_origin(tp) is tuple else bounds
    return ValueError(f"{name} must be {what}, got {shown!r}; allowed: {what}")


_WITHIN = {
    "ge": lambda v, lim: v >= lim,
    "gt": lambda v, lim: v > lim,
    "le": lambda v, lim: v <= lim,
    "lt": lambda v, lim: v < lim,
}


def _scalar(value: Any, tp: Any, meta: Mapping[str, Any]) -> tuple[bool, Any]:
    """``(valid, value as tp)``: ints become floats where a float is asked."""
    if typing.get_origin(tp) is Literal:
        return value in typing.get_args(tp), value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT
    elif tp is float:
        ok = isinstance(value, float) and math.isfinite(value)
    else:
        ok = isinstance(value, tp)
    bounds = [b for b in _BOUNDS if meta.get(b) is not None]
    return ok and all(_WITHIN[b](value, meta[b]) for b in bounds), value


def _check_value(name: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    """Returns ``value`` in its canonical form (lists as tuples) or raises ValueError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(name, value, inner, meta)
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise _invalid(name, value, tp, meta)
        checked = [_scalar(v, args[0], meta) for v in value]
        items = tuple(v for _, v in checked)
        if not all(ok for ok, _ in checked):
            raise _invalid(name, items, tp, meta)
        if meta.get("nonempty") and not items:
            raise ValueError(f"{name} is empty; allowed: {_describe(tp)}, at least one")
        if meta.get("distinct") and len(set(items)) < len(items):
            raise ValueError(f"{name} repeats a value in {list(items)!r}; allowed: distinct values")
        return items
    ok, value = _scalar(value, tp, meta)
    if not ok:
        raise _invalid(name, value, tp, meta)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the study configs (and of typed run specs): checked when constructed."""

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_value(f.name, getattr(self, f.name), hints[f.name], f.metadata)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules between fields; raises ``ValueError("what; allowed: ...")``. Default: none."""


def to_dict(config: Config) -> dict[str, Any]:
    """The JSON form of a config: a flat dict, tuples as lists."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


def _parse_scalar(key: str, text: str, tp: Any, current: Any) -> Any:
    if typing.get_origin(tp) is Literal or tp is str:
        return text
    text = text.strip()
    if tp is bool:
        if text.lower() not in ("true", "false"):
            raise _parse_error(key, text, "a boolean (true or false)", current)
        return text.lower() == "true"
    kind = {int: "an integer", float: "a number"}[tp]
    try:
        value = tp(text)
    except ValueError:
        raise _parse_error(key, text, kind, current) from None
    if not math.isfinite(value):
        raise ValueError(f"value {text!r} for key {key!r} is not finite; allowed: a finite number")
    return value


def _parse_error(key: str, text: str, kind: str, current: Any) -> ValueError:
    current = list(current) if isinstance(current, tuple) else current
    return ValueError(
        f"value {text!r} for key {key!r} is not {kind}; allowed: {kind} (current: {current!r})"
    )


def _parse(key: str, text: str, tp: Any, current: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(key, text, inner, current)
    if origin is tuple:
        items = [t for t in (s.strip() for s in text.split(",")) if t]
        try:
            return tuple(_parse_scalar(key, t, args[0], current) for t in items)
        except ValueError as e:
            raise ValueError(f"{e} (in list {text!r}, given as comma-separated a,b,c)") from None
    return _parse_scalar(key, text, tp, current)


def settable(config: Config) -> tuple[str, ...]:
    """The fields ``--set`` may change: all but ``profile`` (which ``--profile`` chooses)."""
    return tuple(f.name for f in dataclasses.fields(config) if f.name != "profile")


def apply_overrides(config: Config, overrides: Iterable[str], *, unknown_ok: bool = False):
    """Returns ``config`` with ``key=value`` overrides, each coerced by its field's type.

    Lists are given as ``a,b,c``; ``none``/``null`` sets an optional field to ``None``;
    booleans are ``true``/``false``. The result is checked like any new config.

    Args:
      config: a :class:`Config`.
      overrides: strings ``"key=value"``.
      unknown_ok: skip keys the config does not have instead of raising (``run all``).

    Returns:
      The new config (the same type).

    Raises:
      ValueError: malformed override, unknown key, unparsable or invalid value.
    """
    hints, names = _hints(type(config)), settable(config)
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value; allowed: key=value")
        if key == "profile":
            raise ValueError("key 'profile' is set by --profile; allowed: --profile NAME")
        if key not in names:
            if unknown_ok:
                continue
            raise ValueError(f"unknown key {key!r}; allowed: {', '.join(sorted(names))}")
        changes[key] = _parse(key, text, hints[key], getattr(config, key))
    return dataclasses.replace(config, **changes)


def profiles(**configs: Config) -> dict[str, Config]:
    """``{profile name: config}`` with exactly the names of :data:`PROFILES`.

    Raises:
      ValueError: a profile name is missing or unknown, or a config's ``profile`` field
        (where it has one) does not match its name.
    """
    if set(configs) != set(PROFILES):
        raise ValueError(f"profiles {sorted(configs)}; allowed: exactly {', '.join(PROFILES)}")
    for name, config in configs.items():
        if getattr(config, "profile", name) != name:
            raise ValueError(f"profile {name!r} holds a config of profile {config.profile!r}")
    return {name: configs[name] for name in PROFILES}
