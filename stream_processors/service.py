"""Runs the span processor as a background task of a service (``evalforge process`` / ``up``)."""

from __future__ import annotations

import asyncio

from core.services import Services
from core.workers import member_name, run_until_stopped
from stream_processors.eval_trigger import EvalTrigger
from stream_processors.worker import SpanProcessor


def make_processor(services: Services, on_spans=None) -> SpanProcessor:
    s = services.settings
    return SpanProcessor(
        services.bus, services.clickhouse, services.blobs,
        group=s.processor_group, name=member_name(s.bus_url),
        batch_rows=s.sink_batch_rows, batch_ms=s.sink_batch_ms, offload_bytes=s.payload_offload_bytes,
        on_spans=on_spans,
    )


async def processor_task(services: Services, stopping: asyncio.Event) -> None:
    """Consume until ``stopping`` is set, then finish the batch, flush and commit."""
    trigger = EvalTrigger(services.bus, services.pg) if services.pg is not None else None
    processor = make_processor(services, on_spans=trigger)
    services.extras["processor"] = processor
    await run_until_stopped(processor, stopping)


async def processor_with_alerts_task(services: Services, stopping: asyncio.Event) -> None:
    """``evalforge process``: the span processor plus the alert engine (replicas coordinate in Redis)."""
    from stream_processors.alerts.service import alerts_task

    await asyncio.gather(processor_task(services, stopping), alerts_task(services, stopping))
