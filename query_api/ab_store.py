"""A/B tests in PostgreSQL: the request models, the lifecycle and the configuration the SDKs cache.

Lifecycle: ``draft`` -> ``running`` (``start``) -> ``stopped`` (``stop``) or ``completed`` (``winner``;
also from ``stopped``). Weights change by ``ramp`` (draft or running) with the minimal-movement scheme of
``query_api.ab_allocation``. What the SDKs serve: running tests split traffic by the allocation (and
their spans are tagged); a stopped test serves its first (control) variant to everyone and a completed
test its winner, untagged; drafts are not served.
"""

from __future__ import annotations

import inspect
import json
import secrets
import uuid
from datetime import datetime
from typing import Any, Literal

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, field_validator, model_validator

from core import prompts
from core.storable import check_storable
from query_api import ab_allocation
from query_api.ab_stats import rate_mde_problem

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
METRICS = ("score", "latency", "cost", "error_rate")
Direction = Literal["increase", "decrease"]
Finite = Field(allow_inf_nan=False)
MAX_CONFIG_BYTES = 16_384  # a variant's config as JSON


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    """The request does not fit the test's state (answered 409)."""


class PromptRef(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1)
    label: str | None = Field(None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_of(self) -> PromptRef:
        if (self.version is None) == (self.label is None):
            raise ValueError("give exactly one of version or label")
        return self


class VariantIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    weight: float = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    model: str | None = Field(None, max_length=200)
    prompt: PromptRef | None = None
    config: dict[str, Any] = Field(default_factory=dict, description=f"what the SDK hands the app for this "
                                   f"variant; JSON of at most {MAX_CONFIG_BYTES} bytes")

    @field_validator("config")
    @classmethod
    def _storable(cls, config: dict[str, Any]) -> dict[str, Any]:
        # stored as JSONB (no NaN / Infinity / NUL) and served to every SDK poll: bounded
        check_storable(config, "config")
        if len(json.dumps(config)) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes as JSON")
        return config


class MetricIn(BaseModel):
    kind: Literal["score", "latency", "cost", "error_rate"]
    score_name: str | None = Field(None, min_length=1, max_length=200)
    direction: Direction | None = Field(None, description="the desired direction; default: increase for "
                                                          "scores, decrease otherwise")
    span_kind: str = Field("llm", max_length=50, description="which tagged spans are observations "
                                                              "('' = every tagged span)")

    @model_validator(mode="after")
    def _score_name(self) -> MetricIn:
        if self.kind == "score" and not self.score_name:
            raise ValueError("score_name is required when kind is score")
        if self.direction is None:
            self.direction = "increase" if self.kind == "score" else "decrease"
        return self


class GuardrailIn(BaseModel):
    metric: Literal["score", "latency", "cost", "error_rate"]
    score_name: str | None = Field(None, min_length=1, max_length=200)
    max_relative_change: float | None = Field(None, gt=0, le=100, allow_inf_nan=False,
                                              description="worst allowed change vs control, 0.1 = 10 %")
    threshold: float | None = Field(None, allow_inf_nan=False, description="worst allowed value of the variant")
    direction: Direction | None = None
    span_kind: str = Field("llm", max_length=50)

    @model_validator(mode="after")
    def _check(self) -> GuardrailIn:
        if (self.max_relative_change is None) == (self.threshold is None):
            raise ValueError("give exactly one of max_relative_change or threshold")
        if self.metric == "score" and not self.score_name:
            raise ValueError("score_name is required when metric is score")
        if self.direction is None:
            self.direction = "increase" if self.metric == "score" else "decrease"
        return self


class DesignIn(BaseModel):
    type: Literal["fixed", "sequential"] = "fixed"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    mde: float = Field(gt=0, allow_inf_nan=False, description="minimum detectable effect, absolute, in the "
                                                               "metric's unit (0.02 = 2 points of error rate)")
    baseline_sd: float | None = Field(None, gt=0, allow_inf_nan=False,
                                      description="standard deviation for the sample size; default: control's")
    baseline_rate: float | None = Field(None, gt=0, lt=1, description="error rate for the sample size; "
                                                                       "default: control's")


class ABTestIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    variants: list[VariantIn] = Field(min_length=2, max_length=10)
    unit: str = Field("user_id", min_length=1, max_length=100, description="what unit_id means: user_id, "
                                                                            "session_id, account_id, …")
    primary_metric: MetricIn
    guardrails: list[GuardrailIn] = Field(default_factory=list, max_length=10)
    design: DesignIn
    start: bool = Field(False, description="start running at once instead of as a draft")

    @model_validator(mode="after")
    def _rate_mde(self) -> ABTestIn:
        """An error rate's MDE is a difference of rates: a rate ± mde must still be a rate."""
        if self.primary_metric.kind != "error_rate":
            return self
        mde, baseline = self.design.mde, self.design.baseline_rate
        if mde >= 1:
            raise ValueError(f"design.mde: {mde:g} is not a possible difference of error rates (must be < 1)")
        if baseline is not None and (problem := rate_mde_problem(baseline, mde)):
            raise ValueError(f"design.mde: {problem}")
        return self

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[VariantIn]) -> list[VariantIn]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if sum(v.weight for v in variants) <= 0:
            raise ValueError("weights must sum to more than 0")
        return variants


class RampIn(BaseModel):
    weights: dict[str, float] = Field(min_length=1, description="variant name -> new weight; variants "
                                                                "not named keep theirs")

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, weight in weights.items():
            if not (0 <= weight <= 1_000_000):  # also refuses NaN
                raise ValueError(f"weight of {name!r} must be between 0 and 1000000")
        return weights


class WinnerIn(BaseModel):
    variant: str = Field(min_length=1, max_length=100)
    label: str | None = Field(None, min_length=1, max_length=100,
                              description="prompt label to move to the winner's prompt version, e.g. production")


COLUMNS = ("id, name, salt, status, variants, allocation, unit, primary_metric, guardrails, design, winner, "
           "winner_detail, history, created_at, started_at, ended_at, updated_at")


def public(row: dict[str, Any]) -> dict[str, Any]:
    """The API's view of a row: times as ISO strings, each variant with the share of units it is served
    (a stopped test serves the control to all, a completed one its winner; ``weight`` keeps the split)."""
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    owned = ab_allocation.owned(served_segments(row), len(row["variants"]))
    out["variants"] = [{**v, "traffic": owned[i] / ab_allocation.BUCKETS} for i, v in enumerate(row["variants"])]
    return out


async def create(pg, project_id: str, body: ABTestIn) -> dict[str, Any]:
    variants = [v.model_dump(exclude_none=True) for v in body.variants]
    allocation = ab_allocation.initial_allocation([v.weight for v in body.variants])
    status = "running" if body.start else "draft"
    async with pg.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        # ON CONFLICT rather than a SELECT first: two concurrent creates of one name get one 201 and one 409
        await cur.execute(
            f"INSERT INTO ab_tests (id, project_id, name, salt, status, variants, allocation, unit, primary_metric, "
            f"guardrails, design, history, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            f"CASE WHEN %s THEN now() END) ON CONFLICT (project_id, name) DO NOTHING RETURNING {COLUMNS}",
            (uuid.uuid4().hex, project_id, body.name, secrets.token_hex(8), status, Jsonb(variants), Jsonb(allocation),
             body.unit, Jsonb(body.primary_metric.model_dump()), Jsonb([g.model_dump() for g in body.guardrails]),
             Jsonb(body.design.model_dump()), Jsonb([_event("create", status=status)]), body.start))
        row = await cur.fetchone()
    if row is None:
        raise Conflict(f"name: an A/B test named {body.name!r} already exists in this project")
    return row


def _event(action: str, **detail: Any) -> dict[str, Any]:
    return {"at": datetime.now().astimezone().isoformat(), "action": action, **detail}


async def list_tests(pg, project_id: str, status: str | None = None) -> list[dict[str, Any]]:
    async with pg.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        sql = f"SELECT {COLUMNS} FROM ab_tests WHERE project_id = %s"
        params: list[Any] = [project_id]
        if status:
            sql += " AND status = %s"
            params.append(status)
        await cur.execute(sql + " ORDER BY created_at DESC LIMIT 500", params)
        return await cur.fetchall()


async def served_tests(pg, project_id: str) -> list[dict[str, Any]]:
    """Every test the SDKs serve (all but drafts, however many: a completed test serves its winner)."""
    async with pg.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {COLUMNS} FROM ab_tests WHERE project_id = %s AND status <> 'draft'", (project_id,))
        return await cur.fetchall()


async def get(pg, project_id: str, test_id: str, conn=None) -> dict[str, Any]:
    async def read(c) -> dict[str, Any] | None:
        cur = c.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {COLUMNS} FROM ab_tests WHERE project_id = %s AND id = %s"
                          + (" FOR UPDATE" if conn is not None else ""), (project_id, test_id))
        return await cur.fetchone()

    if conn is not None:
        row = await read(conn)
    else:
        async with pg.connection() as c:
            row = await read(c)
    if row is None:
        raise NotFound(test_id)
    return row


async def transition(pg, project_id: str, test_id: str, change) -> dict[str, Any]:
    """Apply ``change(row) -> {column: value}`` (or ``await change(row, conn)`` for an async change that
    writes elsewhere in the same transaction) to the locked row in one transaction."""
    async with pg.connection() as conn:
        async with conn.transaction():
            row = await get(pg, project_id, test_id, conn=conn)
            updates = await change(row, conn) if inspect.iscoroutinefunction(change) else change(row)
            updates["history"] = Jsonb(row["history"] + [updates.pop("event")])
            sets = ", ".join(f"{k} = %s" for k in updates)
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"UPDATE ab_tests SET {sets}, updated_at = now() WHERE project_id = %s AND id = %s "
                              f"RETURNING {COLUMNS}", (*updates.values(), project_id, test_id))
            return await cur.fetchone()


def start_change(row: dict[str, Any]) -> dict[str, Any]:
    if row["status"] != "draft":
        raise Conflict(f"status: only a draft can start (this test is {row['status']})")
    return {"status": "running", "started_at": datetime.now().astimezone(), "event": _event("start")}


def stop_change(row: dict[str, Any]) -> dict[str, Any]:
    if row["status"] != "running":
        raise Conflict(f"status: only a running test can stop (this test is {row['status']})")
    return {"status": "stopped", "ended_at": datetime.now().astimezone(), "event": _event("stop")}


def ramp_change(body: RampIn):
    def change(row: dict[str, Any]) -> dict[str, Any]:
        if row["status"] not in ("draft", "running"):
            raise Conflict(f"status: only a draft or running test can ramp (this test is {row['status']})")
        names = [v["name"] for v in row["variants"]]
        for name in body.weights:
            if name not in names:
                raise ValueError(f"weights.{name}: no such variant (variants: {', '.join(names)})")
        variants = [{**v, "weight": body.weights.get(v["name"], v["weight"])} for v in row["variants"]]
        weights = [v["weight"] for v in variants]
        if sum(weights) <= 0:
            raise ValueError("weights: must sum to more than 0")
        allocation = ab_allocation.ramp(row["allocation"], weights)
        moved = ab_allocation.moved_share(row["allocation"], allocation)
        return {"variants": Jsonb(variants), "allocation": Jsonb(allocation),
                "event": _event("ramp", weights={v["name"]: v["weight"] for v in variants}, moved_share=moved)}
    return change


def served_segments(row: dict[str, Any]) -> list[list[int]]:
    """The split while draft or running; afterwards everyone gets the control, or the winner."""
    if row["status"] in ("draft", "running"):
        return row["allocation"]
    names = [v["name"] for v in row["variants"]]
    serve = names.index(row["winner"]) if row["status"] == "completed" and row["winner"] in names else 0
    return [[0, ab_allocation.BUCKETS, serve]]


def sdk_config(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the SDKs cache: per served test its salt, segments and variants (see module doc)."""
    tests = {}
    for row in rows:
        if row["status"] == "draft":
            continue
        variants = [{k: v[k] for k in ("name", "model", "prompt", "config") if k in v} for v in row["variants"]]
        tests[row["name"]] = {"id": row["id"], "status": row["status"], "salt": row["salt"],
                              "tag": row["status"] == "running", "segments": served_segments(row), "variants": variants}
    return {"buckets": ab_allocation.BUCKETS, "tests": tests}


def winner_change(body: WinnerIn, project_id: str, declared_by: str | None):
    """Completes the test with its winner. With ``label``, the winning variant's prompt version (its
    ``version``, or the version its ``label`` points at now) gets that label via ``core.prompts`` in
    the same transaction: the winner is recorded only if the label moved."""
    async def change(row: dict[str, Any], conn) -> dict[str, Any]:
        if row["status"] not in ("running", "stopped"):
            raise Conflict(f"status: a winner is declared on a running or stopped test (this test is {row['status']})")
        names = [v["name"] for v in row["variants"]]
        if body.variant not in names:
            raise ValueError(f"variant: no such variant {body.variant!r} (variants: {', '.join(names)})")
        label_moved = None
        if body.label is not None:
            label_moved = await _move_prompt_label(conn, project_id, row["variants"][names.index(body.variant)],
                                                   body.label, declared_by)
        now = datetime.now().astimezone()
        detail = {"declared_by": declared_by, "declared_at": now.isoformat(), "label_moved": label_moved}
        return {"status": "completed", "winner": body.variant, "winner_detail": Jsonb(detail),
                "ended_at": row["ended_at"] or now, "event": _event("winner", variant=body.variant)}
    return change


async def _move_prompt_label(conn, project_id: str, variant: dict[str, Any], label: str,
                             author: str | None) -> dict[str, Any]:
    prompt = variant.get("prompt")
    if not prompt:
        raise ValueError(f"label: variant {variant['name']!r} has no prompt whose label could move")
    try:
        version = prompt.get("version")
        if version is None:
            found = await prompts.get_version(conn, project_id, prompt["name"], label=prompt["label"])
            if found is None:
                raise ValueError(f"label: prompt {prompt['name']!r} has no label {prompt['label']!r} any more")
            version = found["version"]
        await prompts.move_label(conn, project_id, prompt["name"], label, version, author=author)
    except prompts.PromptNotFound as exc:
        raise ValueError(f"label: {exc}") from None
    except prompts.PromptError as exc:
        raise ValueError(f"label: {exc}") from None
    return {"prompt": prompt["name"], "label": label, "version": version}
