"""Loading the typed, strict experiment config: defaults, then a YAML file, then ``key.sub=value`` overrides.

Unknown keys and wrong types are errors that name the nearest valid key; the result is then checked by
``validate_config``. Configs stored in old checkpoints are read through ``RETIRED``, the knobs since removed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from denoise.config.checks import validate_config
from denoise.config.schema import Config, ConfigError

# Training knobs removed after their ablations (docs/experiments.md), with the value that kept the behaviour that
# remains. A checkpoint that stored that value loads without them; one trained with another value is refused by
# name, since the config it reports would not be the one it was trained with.
RETIRED: dict[tuple[str, str], object] = {
    ("data", "noise_level_error"): 0.0,
    ("train", "fourier_mode"): "amp_phase",
    ("train", "adjacent_directions"): ["rows", "cols"],
    ("data", "channel_gain_range"): [1.0, 1.0],  # per-crop variation: no gain over scenes (docs/experiments.md)
    ("data", "zoom_out"): 0.0,
}
RETIRED_VALUES: dict[tuple[str, str], tuple[object, ...]] = {("data", "noise_level_report"): ("estimator",)}


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not a silent overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _one_line(err: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where it is (PyYAML's own text quotes the source over lines)."""
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if problem is None:
        return " ".join(str(err).split())
    return problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")


def _nearest(key: str, valid: list[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    if not match:
        return ""
    return f"; did you mean '{prefix}.{match[0]}'?" if prefix else f"; did you mean '{match[0]}'?"


def _float_or_text(text: str) -> float | str:
    """``text`` as a float when Python reads it as one (e.g. "1e-4"), else unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting lists to tuples and ints to floats where declared."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be null")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_hint = args[0] if args else Any
            items = [_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if hint is float:
        if isinstance(value, str):
            value = _float_or_text(value)  # YAML 1.1 reads 1e-4 (no dot, no exponent sign) as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown key '{path}'{_nearest(key, names, where)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def _set_path(data: dict[str, Any], dotted: str, raw: str) -> None:
    """Apply one ``a.b.c=value`` override to nested dict ``data``, validating each key against the schema."""
    keys = dotted.split(".")
    cls: Any = Config
    node = data
    for i, key in enumerate(keys):
        names = [f.name for f in dataclasses.fields(cls)]
        if key not in names:
            prefix = ".".join(keys[:i])
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown key '{path}'{_nearest(key, names, prefix)}")
        hint = typing.get_type_hints(cls)[key]
        if i == len(keys) - 1:
            node[key] = yaml.safe_load(raw) if raw != "" else ""
            if hint is str and not isinstance(node[key], str):
                node[key] = raw  # a string field keeps the literal text, e.g. name=001
        else:
            if not dataclasses.is_dataclass(hint):
                raise ConfigError(f"'{'.'.join(keys[: i + 1])}' has no sub-keys")
            node = node.setdefault(key, {})
            cls = hint


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path``, then ``key.sub=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: no such config file") from err
        except IsADirectoryError as err:
            raise ConfigError(f"{path}: is a folder, not a YAML config file") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not a text file, so not YAML ({err.reason} at byte {err.start})") from err
        except OSError as err:
            raise ConfigError(f"{path}: cannot read it ({err.strerror or err})") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({_one_line(err)})") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        if not loaded:
            raise ConfigError(f"{path}: empty, it sets nothing (name at least one key, e.g. name: my-run)")
        data = loaded
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        _set_path(data, key.strip(), raw)
    return validate_config(from_dict(Config, data))


def _without_retired(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the retired knobs at their kept value dropped; another value is an error naming it."""
    sections = {name: dict(section) if isinstance(section, dict) else section for name, section in data.items()}
    for (section, key), kept in RETIRED.items():
        stored = sections.get(section)
        if isinstance(stored, dict) and key in stored:
            value = stored.pop(key)
            same = sorted(value) == sorted(kept) if isinstance(value, (list, tuple)) else value == kept
            if not same:
                raise ConfigError(f"{section}.{key}={value!r}: this knob was removed (only {kept!r} remains)")
    for (section, key), gone in RETIRED_VALUES.items():
        stored = sections.get(section)
        if isinstance(stored, dict) and stored.get(key) in gone:
            raise ConfigError(f"{section}.{key}={stored[key]!r}: this mode was removed")
    return sections


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config saved with ``to_dict`` (e.g. from a checkpoint), validated."""
    return validate_config(from_dict(Config, _without_retired(data)))


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
