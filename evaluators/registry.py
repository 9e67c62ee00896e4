"""Evaluator registry: eval rules are stored as (evaluator name, config JSON) and built here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from evaluators.base import Evaluator
from evaluators.llm import check_base_url

_REGISTRY: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
    """Class decorator: make an evaluator buildable by name."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"evaluator name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def evaluator_names() -> list[str]:
    """Names accepted by ``get_evaluator``, sorted."""
    return sorted(_REGISTRY)


def evaluator_class(name: str) -> type[Evaluator]:
    """The class registered under ``name``; ValueError naming ``evaluator`` if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"evaluator: unknown evaluator {name!r}; known: {', '.join(evaluator_names())}"
        ) from None


def validate_config(name: str, config: Mapping[str, Any] | str | bytes | None) -> Any:
    """Parse and validate a rule's config; ValueError names the offending field (``config.<field>``)."""
    cls = evaluator_class(name)
    if isinstance(config, (str, bytes)):
        try:
            config = orjson.loads(config) if config else {}
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"config: not valid JSON ({exc})") from None
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ValueError(f"config: must be a JSON object, got {type(config).__name__}")
    try:
        return cls.Config.model_validate(dict(config))
    except ValidationError as exc:
        problems = "; ".join(
            f"config.{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"{name}: {problems}") from None


def validate_rule_config(name: str, config: Mapping[str, Any], egress: Any) -> None:
    """An eval rule's config as stored: valid for its evaluator, and any ``base_url`` one the egress
    guard allows (``check_base_url``; ``egress``: the settings it reads; may resolve DNS, so async code
    runs this in a thread). ValueError names the field (``config.<field>``)."""
    validate_config(name, config)
    try:
        check_base_url(config.get("base_url"), egress)
    except ValueError as exc:
        raise ValueError(f"config.{exc}") from None


def get_evaluator(name: str, config: Mapping[str, Any] | str | bytes | None = None, **deps: Any) -> Evaluator:
    """Build the evaluator registered as ``name`` from its config (dict or JSON text).

    ``deps`` are runtime collaborators that do not belong in stored config (for LLM judges: ``guard``,
    ``api_key``). Unknown name or bad config -> ValueError naming the field.
    """
    cls = evaluator_class(name)
    return cls(validate_config(name, config), **deps)
