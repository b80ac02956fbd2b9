"""YAML in, a validated ``PipelineConfig`` out, or one ``ConfigError`` listing every problem.

Each problem names the key path and what is wrong ("source.port: expected an integer, got 'abc'").
``${VAR}`` and ``${VAR:-default}`` are replaced in string values after parsing (so a secret with YAML
special characters cannot break the file); ``$${`` stands for a literal ``${``. Values of secret keys,
and any value that came from the environment into a secret key, never appear in a message.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cdc.config.models import (
    SECRET_WORDS,
    SINK_CONFIG_TYPES,
    PipelineConfig,
    mask_url_password,
)
from cdc.core.errors import ConfigError

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


@dataclass
class _Problems:
    items: list[tuple[Loc, str]] = field(default_factory=list)

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((loc, message))


def format_path(loc: Loc) -> str:
    """('sinks', 0, 'url') -> 'sinks[0].url'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def is_secret_key(loc: Loc) -> bool:
    return any(isinstance(p, str) and any(w in p.lower() for w in SECRET_WORDS) for p in loc)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> PipelineConfig:
    """Read and validate a pipeline config file; raise ConfigError naming every problem."""
    config_path = Path(path)
    env = dict(environ) if environ is not None else _os_environ()
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {config_path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config_path} cannot be read: {exc}") from None
    return parse_config(text, env, origin=str(config_path))


def parse_config(text: str, environ: Mapping[str, str], origin: str = "<config>") -> PipelineConfig:
    raw = _parse_yaml(text, origin)
    problems = _Problems()
    secrets: set[str] = set()
    data = _interpolate(raw, (), environ, problems, secrets)
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys at the top level")

    sinks_raw = data.get("sinks", [])
    sinks: list[BaseModel] = []
    if not isinstance(sinks_raw, list):
        problems.add(("sinks",), f"expected a list of sinks, got {type(sinks_raw).__name__}")
        sinks_raw = []
    for index, sink in enumerate(sinks_raw):
        model = _validate_sink(sink, index, problems, secrets)
        if model is not None:
            sinks.append(model)

    top = {k: v for k, v in data.items() if k != "sinks"}
    try:
        config = PipelineConfig.model_validate(top)
    except ValidationError as exc:
        _add_validation_errors(exc, PipelineConfig, (), problems, secrets)
        config = None

    if problems.items:
        raise ConfigError(_render(origin, problems, secrets))
    assert config is not None
    return config.model_copy(update={"sinks": sinks})


def secret_values(config: PipelineConfig) -> set[str]:
    """Every secret a config holds, for the log redactor."""
    found = {config.any_source.password.get_secret_value()}
    for sink in config.sinks:
        url = getattr(sink, "url", None)
        if url:
            found.add(_url_password(url))
        for key, value in getattr(sink, "catalog", {}).items():
            if is_secret_key((key,)):
                found.add(value)
            elif "://" in value:
                found.add(_url_password(value))
    if config.stream is not None:
        for key, value in config.stream.properties.items():
            if is_secret_key((key,)):
                found.add(value)
    if config.policies is not None and config.policies.hash_key_env:
        # the HMAC key lives in the environment, not in the file: masked wherever it would show
        found.add(_os_environ().get(config.policies.hash_key_env, ""))
    return {s for s in found if s}


def _url_password(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).password or ""


def _os_environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its place: the YAML snippet could show a password on that line.
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{origin}: malformed YAML{where}: {what}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{origin}: malformed YAML") from None


def _interpolate(
    value: Any, loc: Loc, environ: Mapping[str, str], problems: _Problems, secrets: set[str]
) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(loc, f"keys must be strings, got {key!r}")
                continue
            out[key] = _interpolate(item, (*loc, key), environ, problems, secrets)
        return out
    if isinstance(value, list):
        return [_interpolate(item, (*loc, i), environ, problems, secrets) for i, item in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            resolved = environ[name]
        elif default is not None:
            resolved = default
        else:
            problems.add(
                loc, f"environment variable {name} is not set (export it or use ${{{name}:-default}})"
            )
            return ""
        if is_secret_key(loc):
            secrets.add(resolved)
        return resolved

    return _ENV_REF.sub(replace, value)


def _validate_sink(sink: Any, index: int, problems: _Problems, secrets: set[str]) -> BaseModel | None:
    loc: Loc = ("sinks", index)
    if not isinstance(sink, dict):
        problems.add(loc, f"expected a mapping with a 'type', got {type(sink).__name__}")
        return None
    kind = sink.get("type")
    known = sorted(SINK_CONFIG_TYPES)
    if kind is None:
        problems.add((*loc, "type"), f"is required (one of: {', '.join(known)})")
        return None
    model_cls = SINK_CONFIG_TYPES.get(str(kind))
    if model_cls is None:
        hint = _did_you_mean(str(kind), known)
        problems.add((*loc, "type"), f"unknown sink type{hint} (known: {', '.join(known)})")
        return None
    try:
        return model_cls.model_validate(sink)
    except ValidationError as exc:
        _add_validation_errors(exc, model_cls, loc, problems, secrets)
        return None


def _add_validation_errors(
    exc: ValidationError, root: type[BaseModel], prefix: Loc, problems: _Problems, secrets: set[str]
) -> None:
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        problems.add((*prefix, *loc), _describe(error, root, loc, secrets))


def _describe(error: Any, root: type[BaseModel], loc: Loc, secrets: set[str]) -> str:
    kind: str = error["type"]
    ctx = error.get("ctx") or {}
    raw = error.get("input")
    hidden = is_secret_key(loc) or (isinstance(raw, str) and any(s in raw for s in secrets if s))
    got = "" if hidden else f", got {_show(raw)}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        options = sorted(_fields_of(_model_at(root, loc[:-1])))
        return f"unknown key{_did_you_mean(str(loc[-1]), options)} (allowed: {', '.join(options)})"
    simple = {
        "int_parsing": "expected an integer",
        "int_type": "expected an integer",
        "int_from_float": "expected an integer",
        "float_parsing": "expected a number",
        "float_type": "expected a number",
        "bool_parsing": "expected true or false",
        "bool_type": "expected true or false",
        "string_type": "expected a string",
        "list_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
        "path_type": "expected a path",
    }
    if kind in simple:
        return simple[kind] + got
    if kind in {"literal_error", "enum"}:
        return f"expected one of {ctx.get('expected')}{got}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {limit}{got}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return (
            "must start with a letter and hold only letters, digits, '_' and '-' (at most 63 characters)"
            + got
        )
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"]) + got


def _show(value: Any) -> str:
    if isinstance(value, str):
        shown = mask_url_password(value) if "://" in value else value
        return repr(shown if len(shown) <= 80 else shown[:77] + "...")
    if isinstance(value, dict | list):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return repr(value)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" {word!r}; did you mean {close[0]!r}?" if close else f" {word!r}"


def _fields_of(model: type[BaseModel] | None) -> Iterator[str]:
    if model is None:
        return
    for name, info in model.model_fields.items():
        yield info.alias or name


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return None
        current = _first_model(info.annotation)
    return current


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in {typing.Union, types.UnionType, list, typing.Annotated}:
        for arg in typing.get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def _render(origin: str, problems: _Problems, secrets: set[str]) -> str:
    lines = [f"{format_path(loc)}: {message}" for loc, message in problems.items]
    text = f"{origin}: {len(lines)} problem{'s' if len(lines) != 1 else ''}:\n  " + "\n  ".join(lines)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
