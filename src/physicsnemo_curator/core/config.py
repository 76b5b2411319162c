"""Pipeline configurations: hashing, saving and loading as YAML or JSON.

A component is written as ``{"type": "package.module:ClassName", "params": {...}}``
and found again by that import path, or by a name registered with
:func:`register_component`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from physicsnemo_curator.core.errors import ConfigError

_registry: dict[str, type] = {}


def register_component(cls: type, name: str | None = None) -> type:
    """Register ``cls`` under ``name`` (default: its class name) for :func:`load_config`."""
    _registry[name or cls.__name__] = cls
    return cls


def type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_type(spec: str) -> type:
    """Find a component class from ``module:QualName`` or a registered name."""
    if spec in _registry:
        return _registry[spec]
    module_name, sep, qualname = spec.partition(":")
    if not sep:
        module_name, _, qualname = spec.rpartition(".")
    if not module_name:
        raise ConfigError(
            f"Unknown component type {spec!r}: give it as 'package.module:ClassName' or "
            f"register it with physicsnemo_curator.register_component()."
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Cannot import module {module_name!r} for component type {spec!r}: {exc}") from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(f"Module {module_name!r} has no {qualname!r} (component type {spec!r}).") from exc
    return obj


def _plain(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return float(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v, where) for v in value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, type):
        return type_path(value)
    if hasattr(value, "config") and hasattr(type(value), "params"):
        return component_config(value)
    raise ConfigError(
        f"Parameter {where} has a value of type {type(value).__name__} that cannot be saved "
        f"in a pipeline file; use str, numbers, lists or dicts, or override config()."
    )


def component_config(component: Any) -> dict[str, Any]:
    name = type(component).__name__
    params = {key: _plain(value, f"{name}.{key}") for key, value in component.config().items()}
    return {"type": type_path(type(component)), "params": params}


def build_component(spec: Mapping[str, Any], base: type | None = None) -> Any:
    """Build a component from ``{"type": ..., "params": ...}``.

    The type must be a class (a subclass of ``base`` when given), so a
    pipeline file cannot make this call an arbitrary function. Loading still
    imports the modules a file names: load only pipeline files you trust.
    """
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"A component entry needs a 'type' key, got {spec!r}.")
    cls = resolve_type(spec["type"])
    if not isinstance(cls, type) or (base is not None and not issubclass(cls, base)):
        expected = "a component class" if base is None else f"a subclass of {base.__name__}"
        raise ConfigError(f"Component type {spec['type']!r} is not {expected}; check the 'type' entry of the pipeline file.")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"The 'params' of {spec['type']!r} must be a mapping, got {params!r}.")
    params = dict(params)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"Cannot build {spec['type']} with parameters {params!r}: {exc}") from exc


def pipeline_config(pipeline: Any) -> dict[str, Any]:
    """Return the JSON-ready configuration of ``pipeline``: components and tracking flags."""
    return {
        "source": None if pipeline.source is None else component_config(pipeline.source),
        "filters": [component_config(f) for f in pipeline.filters],
        "sink": None if pipeline.sink is None else component_config(pipeline.sink),
        "track_metrics": pipeline.track_metrics,
        "track_memory": pipeline.track_memory,
        "track_gpu": pipeline.track_gpu,
    }


def config_hash(config: Mapping[str, Any]) -> str:
    """Return the SHA-256 hex digest of the components of ``config``.

    Tracking flags are left out, so turning memory tracking on or off keeps
    the same resume database.
    """
    identity = {key: config.get(key) for key in ("source", "filters", "sink")}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def save_config(config: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(dict(config), sort_keys=False)
    elif suffix == ".json":
        text = json.dumps(config, indent=2)
    else:
        raise ConfigError(f"Cannot save a pipeline to {path}: use a .yaml, .yml or .json file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Pipeline file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"Pipeline file {path} is not a file; pass a .yaml, .yml or .json file written by Pipeline.save().")
    suffix = path.suffix.lower()
    text = path.read_text()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"Cannot load a pipeline from {path}: use a .yaml, .yml or .json file.")
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"Cannot parse pipeline file {path}: {exc}") from exc
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"Cannot parse pipeline file {path}: {exc}") from exc
        raise
    if not isinstance(data, dict) or "source" not in data:
        raise ConfigError(f"Pipeline file {path} has no 'source' entry; it does not look like a saved pipeline.")
    return data
