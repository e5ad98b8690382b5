"""Typed config dataclasses from mappings and YAML: unknown keys and wrong types are errors."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from nasdun.core.errors import NasdunError

C = TypeVar("C")


def load_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The mapping a YAML file holds; ``what`` (config, protocol, problem) names the file in the one-line errors."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise NasdunError(f"{what} file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise NasdunError(f"{what} file {str(p)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NasdunError(f"{what} file {str(p)!r} must hold a mapping; got {type(data).__name__}")
    return data


def from_mapping(cls: type[C], data: Mapping[str, Any], what: str) -> C:
    """Build dataclass ``cls`` from ``data``; ``what`` names the source in error messages."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise NasdunError(f"{what}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        values[key] = _coerce(value, hints[key], f"{what}: {key}")
    try:
        return cls(**values)
    except TypeError as err:
        raise NasdunError(f"{what}: {err}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except NasdunError:
                pass
        raise NasdunError(f"{where}={value!r}; expected {hint}")
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise NasdunError(f"{where}={value!r}; expected a list")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value) if origin is tuple else [_coerce(v, inner, where) for v in value]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise NasdunError(f"{where}={value!r}; expected a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise NasdunError(f"{where}={value!r}; expected an integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise NasdunError(f"{where}={value!r}; expected true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise NasdunError(f"{where}={value!r}; expected a string")
        return value
    return value
