"""Runs the span processor as a background task of a service (``evalforge process`` / ``up``)."""

from __future__ import annotations

import asyncio

from core.services import Services, open_clickhouse
from core.workers import member_name, run_until_stopped
from stream_processors.eval_trigger import EvalTrigger
from stream_processors.price_overrides import PriceOverrides
from stream_processors.roller import Roller
from stream_processors.worker import SpanProcessor, collect_less_often


def make_processor(services: Services, on_spans=None, clickhouse=None) -> SpanProcessor:
    s = services.settings
    return SpanProcessor(
        services.require_bus(), clickhouse or services.clickhouse, services.blobs,
        group=s.processor_group, name=member_name(s.bus_url),
        batch_rows=s.sink_batch_rows, batch_ms=s.sink_batch_ms, batch_bytes=s.sink_batch_bytes, offload_bytes=s.payload_offload_bytes,
        on_spans=on_spans, prices=PriceOverrides(services.pg) if services.pg is not None else None,
    )


async def processor_task(services: Services, stopping: asyncio.Event) -> None:
    """Consume until ``stopping`` is set, then finish the batch, flush and commit; roll the rollups
    meanwhile."""
    trigger = EvalTrigger(services.bus, services.pg) if services.pg is not None else None
    # The processor's own client: with chDB its own engine handle, with a server its own session. A
    # shared client serializes every call, so inserts queued behind API queries and the reverse
    # (at 5,000 spans/s plus trace polling, a trace read waited up to ~270 ms for an insert).
    url = services.urls["clickhouse"]
    clickhouse = await asyncio.to_thread(open_clickhouse, url)
    # the roller's own client too: one query at a time per session
    roller_clickhouse = await asyncio.to_thread(open_clickhouse, url)
    collect_less_often()
    try:
        processor = make_processor(services, on_spans=trigger, clickhouse=clickhouse)
        roller = Roller(roller_clickhouse)
        services.extras["processor"] = processor
        services.extras["roller"] = roller
        async with asyncio.TaskGroup() as tasks:  # one failing stops the other
            tasks.create_task(run_until_stopped(processor, stopping))
            tasks.create_task(run_until_stopped(roller, stopping))
    finally:
        if not url.startswith("chdb://"):  # chDB handles live as long as the engine (see Services.close)
            clickhouse.close()
            roller_clickhouse.close()


async def processor_with_alerts_task(services: Services, stopping: asyncio.Event) -> None:
    """``evalforge process``: the span processor plus the alert engine (replicas coordinate in Redis)."""
    from stream_processors.alerts.service import alerts_task

    await asyncio.gather(processor_task(services, stopping), alerts_task(services, stopping))
