"""Typed dataclass configs with named presets, CLI overrides and did-you-mean errors.

A config class is a (possibly nested) dataclass with a ``PRESETS`` class attribute mapping a preset
name to overrides of the defaults. The defaults are the ``tiny`` preset (CPU, tests)::

    @dataclass
    class TrainConfig:
        PRESETS: ClassVar[dict] = {"tiny": {}, "paper": {"batch_size": 64, "optim.lr": 1e-4}}
        batch_size: int = 4
        optim: OptimConfig = field(default_factory=OptimConfig)

    cfg = make_config(TrainConfig, "paper", ["optim.lr=3e-4"])
    save_config(cfg, out_dir)         # next to every artifact the config produces
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

CONFIG_FILENAME = "config.json"


class ConfigError(ValueError):
    """A preset, key or value that does not fit the config class."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def preset_names(cls: type) -> list[str]:
    return list(getattr(cls, "PRESETS", {"tiny": {}}))


def make_config(cls: type[T], preset: str = "tiny", overrides: Sequence[str] | Mapping[str, Any] = ()) -> T:
    """Build ``cls`` from a named preset, then apply overrides (``"a.b=1"`` strings or a mapping)."""
    presets = getattr(cls, "PRESETS", {"tiny": {}})
    if preset not in presets:
        raise ConfigError(
            f"unknown preset {preset!r} for {cls.__name__}; available: {sorted(presets)}."
            + did_you_mean(preset, presets)
        )
    cfg = cls()
    cfg = apply_overrides(cfg, presets[preset])
    cfg = apply_overrides(cfg, overrides)
    _validate(cfg)
    return cfg


def apply_overrides(cfg: T, overrides: Sequence[str] | Mapping[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-key overrides applied; values given as strings are parsed."""
    if isinstance(overrides, Mapping):
        items = list(_flatten(overrides))
    else:
        items = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-4)")
            key, value = item.split("=", 1)
            items.append((key.strip(), value))
    for key, value in items:
        cfg = _set_path(cfg, key.split("."), value, key)
    return cfg


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, full + ".")
        else:
            yield full, value


def _set_path(cfg: Any, path: list[str], value: Any, full_key: str) -> Any:
    hints = _type_hints(type(cfg))
    name = path[0]
    if name not in hints:
        raise ConfigError(
            f"unknown config key {full_key!r} in {type(cfg).__name__}; valid keys: {sorted(hints)}."
            + did_you_mean(name, hints)
        )
    if len(path) == 1:
        new_value = coerce(value, hints[name], full_key)
    else:
        child = getattr(cfg, name)
        if isinstance(child, Mapping):  # a free-form mapping field (e.g. a backbone's kwargs): set a key inside
            new_value = coerce(_set_in_mapping(child, path[1:], value), hints[name], full_key)
        elif dataclasses.is_dataclass(child):
            new_value = _set_path(child, path[1:], value, full_key)
        else:
            raise ConfigError(f"{full_key!r}: {name!r} is a {type(child).__name__}, not a nested config")
    return dataclasses.replace(cfg, **{name: new_value})


def _set_in_mapping(mapping: Mapping[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``mapping`` with ``path`` set to ``value`` (a string is read as YAML, as on the command line)."""
    out = dict(mapping)
    if len(path) == 1:
        out[path[0]] = yaml.safe_load(value) if isinstance(value, str) else value
    else:
        inner = out.get(path[0])
        out[path[0]] = _set_in_mapping(inner if isinstance(inner, Mapping) else {}, path[1:], value)
    return out


def _type_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def coerce(value: Any, tp: Any, key: str = "value") -> Any:
    """Convert ``value`` (often a CLI string) to the annotated type ``tp``, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key!r}: cannot read {value!r} as {tp}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if isinstance(value, str):
            for choice in args:
                if str(choice) == value:
                    return choice
        if value in args:
            return value
        raise ConfigError(
            f"{key!r}: {value!r} is not one of {list(args)}." + did_you_mean(str(value), map(str, args))
        )
    if origin in (tuple, list):
        if isinstance(value, str):
            value = _parse_sequence(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key!r}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key!r}: expected {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
        item_type = args[0] if args else Any
        items = [coerce(v, item_type, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key!r}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, _prefix=key + ".")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value) if not isinstance(value, tp) else value
        except ValueError:
            names = [m.value for m in tp]
            raise ConfigError(f"{key!r}: {value!r} is not one of {names}." + did_you_mean(str(value), map(str, names))) from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key!r}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key!r}: expected {tp.__name__}, got a bool")
        try:
            if tp is int:
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key!r}: expected {tp.__name__}, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key!r}: expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def _parse_sequence(text: str) -> list:
    text = text.strip()
    if text.startswith("["):
        return list(yaml.safe_load(text))
    return [] if not text else [part.strip() for part in text.split(",")]


def to_dict(cfg: Any) -> dict:
    """JSON-ready dict of a config (tuples become lists, paths and enums become strings)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, enum.Enum):
            return value.value
        return value

    return convert(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any], _prefix: str = "") -> T:
    """Strictly rebuild ``cls`` from a dict: unknown keys fail with a did-you-mean message."""
    hints = _type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key {_prefix + key!r} in {cls.__name__}; valid keys: {sorted(hints)}."
                + did_you_mean(key, hints)
            )
        kwargs[key] = coerce(value, hints[key], _prefix + key)
    cfg = cls(**kwargs)
    _validate(cfg)
    return cfg


def _validate(cfg: Any) -> None:
    check = getattr(cfg, "validate", None)
    if callable(check):
        check()
    for f in dataclasses.fields(cfg):
        child = getattr(cfg, f.name)
        if dataclasses.is_dataclass(child) and not isinstance(child, type):
            _validate(child)


def save_config(cfg: Any, directory: str | Path, preset: str | None = None, filename: str = CONFIG_FILENAME) -> Path:
    """Write ``cfg`` as JSON next to the artifact it produced; returns the file path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    payload = {
        "type": f"{type(cfg).__module__}:{type(cfg).__qualname__}",
        "preset": preset,
        "config": to_dict(cfg),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a config saved by :func:`save_config` (or a plain JSON/YAML mapping of fields)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILENAME
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "config" in data and "type" in data:
        expected = f"{cls.__module__}:{cls.__qualname__}"
        if data["type"] != expected:
            raise ConfigError(f"{path}: holds a {data['type']} config, expected {expected}")
        data = data["config"]
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def add_config_arguments(parser: Any, cls: type) -> None:
    """Add ``--preset``, ``--config FILE`` and ``--set key=value`` to an argparse parser."""
    parser.add_argument("--preset", default="tiny", help=f"named preset: {', '.join(preset_names(cls))}")
    parser.add_argument("--config", dest="config_file", default=None, help="YAML/JSON file of overrides")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config field (repeatable), e.g. --set train.lr=1e-4",
    )


def config_from_args(args: Any, cls: type[T]) -> T:
    """Build a config from the arguments added by :func:`add_config_arguments`."""
    cfg = make_config(cls, args.preset)
    if args.config_file:
        path = Path(args.config_file)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        cfg = apply_overrides(cfg, data)
    cfg = apply_overrides(cfg, args.overrides)
    _validate(cfg)
    return cfg
