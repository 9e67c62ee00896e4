"""Helpers shared by the query routers: request parameters -> validated values, errors -> HTTP."""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from typing import overload

from fastapi import HTTPException
from starlette.datastructures import QueryParams

from query_api.filters import BadParam, parse_int
from query_api.traces_sql import NotFound


@contextmanager
def http_errors(not_found: str = "not found") -> Iterator[None]:
    """BadParam -> 400 naming the parameter; NotFound -> 404."""
    try:
        yield
    except BadParam as exc:
        raise HTTPException(400, str(exc)) from None
    except NotFound:
        raise HTTPException(404, not_found) from None


@overload
def one_of(params: QueryParams, name: str, choices: tuple[str, ...], default: str) -> str: ...
@overload
def one_of(params: QueryParams, name: str, choices: tuple[str, ...], default: None) -> str | None: ...


def one_of(params: QueryParams, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    """The parameter's one value among ``choices``, or ``default`` when absent (typed: a str default, a str)."""
    values = params.getlist(name)
    if len(values) > 1:
        raise BadParam(name, "given more than once")
    if not values:
        return default
    if values[0] not in choices:
        raise BadParam(name, f"must be one of {', '.join(choices)}")
    return values[0]


def int_param(params: QueryParams, name: str, default: int, minimum: int, maximum: int) -> int:
    values = params.getlist(name)
    if len(values) > 1:
        raise BadParam(name, "given more than once")
    return parse_int(name, values[0], minimum=minimum, maximum=maximum) if values else default


def text_param(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise BadParam(name, "given more than once")
    if values and len(values[0]) > 256:
        raise BadParam(name, "longer than 256 characters")
    return values[0] if values else None
