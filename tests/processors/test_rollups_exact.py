"""Rollups exact by construction (core/rollups.py): each way a span reaches ClickHouse more than once, or
late, reproduced by injecting the fault, then metrics_1m / metrics_user_1m as the metrics API reads them
compared to the same aggregates over spans FINAL (tests/processors/rollups_check.py), before and after
the minutes are rolled. The Kafka cases (kill -9, rebalance, outage) are in the *_kafka.py files."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from core.bus import TOPIC_SPANS
from stream_processors import roller
from stream_processors.enrich import enrich
from stream_processors.sink import ClickHouseSink
from stream_processors.worker import SpanProcessor
from tests.processors.conftest import as_message, make_span
from tests.processors.rollups_check import assert_rollups_exact, assert_same, read, truth, unrolled_minutes
from tests.processors.test_processor import _count, _run_until


@pytest.mark.asyncio
async def test_an_insert_retried_after_a_timeout_the_server_had_committed_counts_once(private_bus, clickhouse,
                                                                                     monkeypatch):
    project = uuid.uuid4().hex[:12]
    await private_bus.publish(TOPIC_SPANS, [as_message(make_span(project, i, user_id=f"u{i % 4}")) for i in range(60)])
    insert, calls = ClickHouseSink._insert_spans, []

    def committed_then_timed_out(sink):
        insert(sink)  # the server commits the insert...
        calls.append(len(sink.span_rows))
        if len(calls) == 1:
            raise TimeoutError("read timed out")  # ...and the client never hears back

    monkeypatch.setattr(ClickHouseSink, "_insert_spans", committed_then_timed_out)
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-timeout", batch_ms=100)
    await _run_until(proc, lambda: proc.stats["spans"] >= 60)
    assert proc.stats["insert_retries"] >= 1 and calls[0] == calls[1]  # the same batch, inserted twice
    assert _count(clickhouse, project) == 60
    assert_rollups_exact(clickhouse, project, requests=60)


@pytest.mark.asyncio
async def test_late_spans_and_client_retries_after_a_minute_was_rolled_count_once(private_bus, clickhouse):
    """An SDK that buffered while the backend was down sends new spans for minutes long rolled, and
    re-sends spans stored then (with a later ingest time, another price): the minutes are read from the
    spans again until they are rolled again, each span counted once, its latest version."""
    project = uuid.uuid4().hex[:12]
    first = [make_span(project, i * 13, cost=0.5, cost_source="user") for i in range(40)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in first])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-late", batch_ms=100)
    await _run_until(proc, lambda: proc.stats["spans"] >= 40)
    assert_rollups_exact(clickhouse, project, requests=40)  # every minute rolled

    late = [make_span(project, i * 13 + 1, cost=0.25, cost_source="user") for i in range(10)]
    retried = [{**s, "ingested_at": datetime.now(timezone.utc), "cost": 0.75} for s in first[:15]]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in late + retried])
    again = SpanProcessor(private_bus, clickhouse, None, group="g-late", batch_ms=100)
    await _run_until(again, lambda: again.stats["spans"] >= 25)
    assert unrolled_minutes(clickhouse, project) > 0  # re-opened by the late writes
    [(cost,)] = clickhouse.query("SELECT sum(cost) FROM spans FINAL WHERE project_id = {p:String}",
                                 parameters={"p": project}).result_rows
    assert cost == pytest.approx(25 * 0.5 + 15 * 0.75 + 10 * 0.25)
    assert_rollups_exact(clickhouse, project, requests=50)


def _store(clickhouse, spans) -> None:
    sink = ClickHouseSink(clickhouse, "test:race")
    for i, span in enumerate(spans):
        sink.add_span(enrich(span), 0, i)
    assert sink.flush() == []  # insert, then the marks


class _InsertsDuringRoll:
    """A client that lets another writer's insert and mark land in the middle of a roll: after its
    version was taken and metrics_1m written, before metrics_user_1m is."""

    def __init__(self, client, write):
        self._client, self._write = client, write

    def command(self, sql, *args, **kwargs):
        if self._write is not None and sql.startswith("INSERT INTO metrics_user_1m"):
            write, self._write = self._write, None
            write()
        return self._client.command(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_write_landing_while_a_minute_is_rolled_keeps_the_minute_exact(clickhouse):
    project = uuid.uuid4().hex[:12]
    _store(clickhouse, [make_span(project, i * 3, user_id="a") for i in range(20)])
    more = [make_span(project, i * 3 + 1, user_id="b") for i in range(20)]
    racing = _InsertsDuringRoll(clickhouse, lambda: _store(clickhouse, more))
    roller.roll(racing, roller.due_minutes(clickhouse, 0, None, 5000))
    # the roll's metrics_1m rows missed the second writer's spans...
    [(rolled,)] = clickhouse.query("SELECT sum(requests) FROM metrics_1m WHERE project_id = {p:String}",
                                   parameters={"p": project}).result_rows
    assert rolled == 20
    # ...but its version predates that writer's marks: those minutes are still read from the spans
    assert unrolled_minutes(clickhouse, project) > 0
    for table in ("metrics_1m", "metrics_user_1m"):
        assert_same(read(clickhouse, project, table), truth(clickhouse, project, table), table)
    assert_rollups_exact(clickhouse, project, requests=40)


def test_an_insert_not_yet_marked_is_never_hidden_by_a_roll(clickhouse, monkeypatch):
    """A writer's insert lands, a roll runs, and only then the writer marks the minute (it was slow, or
    crashed and its batch is written again): the minute is read from the spans until rolled anew."""
    project = uuid.uuid4().hex[:12]
    _store(clickhouse, [make_span(project, i * 3) for i in range(20)])
    roller.roll_due(clickhouse)
    late = [make_span(project, i * 3 + 1, environment="prod") for i in range(5)]
    sink = ClickHouseSink(clickhouse, "test:race")
    for i, span in enumerate(late):
        sink.add_span(enrich(span), 0, i)
    marks, sink.minutes = sink.minutes, set()
    assert sink.flush() == []  # inserted, not marked yet
    roller.roll_due(clickhouse)  # rolls nothing new: no minute was marked since its roll
    from core.rollups import mark_minutes

    mark_minutes(clickhouse, marks)
    assert unrolled_minutes(clickhouse, project) == len(marks)
    assert_rollups_exact(clickhouse, project, requests=25)


def test_the_roller_rolls_only_quiet_minutes_and_a_minute_marked_again_anew(clickhouse):
    project = uuid.uuid4().hex[:12]
    _store(clickhouse, [make_span(project, i * 10) for i in range(12)])
    roller.roll_due(clickhouse, quiet_s=3600)
    assert unrolled_minutes(clickhouse, project) > 0  # marked just now: not quiet for an hour
    roller.roll_due(clickhouse)
    assert unrolled_minutes(clickhouse, project) == 0
    versions = clickhouse.query("SELECT count(DISTINCT version) FROM metrics_1m WHERE project_id = {p:String}",
                                parameters={"p": project}).result_rows[0][0]
    _store(clickhouse, [make_span(project, 5)])  # one more span in the first minute
    assert unrolled_minutes(clickhouse, project) == 1
    roller.roll_due(clickhouse)
    assert clickhouse.query("SELECT count(DISTINCT version) FROM metrics_1m WHERE project_id = {p:String}",
                            parameters={"p": project}).result_rows[0][0] == versions + 1
    assert_rollups_exact(clickhouse, project, requests=13)


@pytest.mark.asyncio
async def test_the_roller_task_rolls_and_stops(clickhouse):
    project = uuid.uuid4().hex[:12]
    _store(clickhouse, [make_span(project, i) for i in range(5)])
    task_roller = roller.Roller(clickhouse, interval_s=0.1, quiet_s=0, recent=timedelta(days=36500))
    task = asyncio.create_task(task_roller.run())
    try:
        async with asyncio.timeout(30):
            while await asyncio.to_thread(unrolled_minutes, clickhouse, project):  # noqa: ASYNC110 - polls ClickHouse
                await asyncio.sleep(0.1)
    finally:
        task_roller.stop()
        await task
    assert task_roller.rolled >= 1


@pytest.mark.asyncio
async def test_a_crash_between_the_insert_and_its_marks_is_repaired_by_the_redelivery(private_bus, clickhouse,
                                                                                     monkeypatch):
    """Minutes already rolled get spans whose marks never come (the process dies right after the
    insert): those spans are not committed on the bus, so they come again, are written and marked."""
    from stream_processors import sink as sink_module

    project = uuid.uuid4().hex[:12]
    first = [make_span(project, i * 7) for i in range(20)]
    _store(clickhouse, first)
    roller.roll_due(clickhouse)
    late = [make_span(project, i * 7 + 3, status="error") for i in range(20)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in late])

    class Killed(BaseException):  # like SIGKILL: no retry loop catches it
        pass

    def killed_before_marking(client, minutes):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(sink_module, "mark_minutes", killed_before_marking)
        with pytest.raises(Killed):
            await SpanProcessor(private_bus, clickhouse, None, group="g-unmarked", batch_ms=100).run()
    assert _count(clickhouse, project) == 40  # inserted...
    roller.roll_due(clickhouse)
    assert unrolled_minutes(clickhouse, project) == 0  # ...not marked: the rollups do not know yet
    again = SpanProcessor(private_bus, clickhouse, None, group="g-unmarked", batch_ms=100)
    await _run_until(again, lambda: again.stats["spans"] >= 20)
    assert unrolled_minutes(clickhouse, project) > 0
    assert_rollups_exact(clickhouse, project, requests=40)


@pytest.mark.asyncio
async def test_a_call_recorded_twice_counts_once_in_the_rollups_which_keep_kinds(private_bus, clickhouse):
    """A model call recorded twice (ingest marks the extra record evalforge.duplicate_of) counts once in
    the rollups as in spans FINAL, rolled or not; metric=requests (model calls by default) is served
    from metrics_1m, and kind=all counts every counted span."""
    from starlette.datastructures import QueryParams

    from query_api.filters import parse_filters
    from query_api.metrics_sql import MetricQuery, run_metric

    project = uuid.uuid4().hex[:12]
    calls = [make_span(project, i) for i in range(10)]
    doubles = [make_span(project, i, attributes={"evalforge.duplicate_of": calls[i]["span_id"]}) for i in range(4)]
    chains = [make_span(project, i, kind="chain", name="agent", input_tokens=0, output_tokens=0) for i in range(6)]
    await private_bus.publish(TOPIC_SPANS, [as_message(s) for s in calls + doubles + chains])
    proc = SpanProcessor(private_bus, clickhouse, None, group="g-counted", batch_ms=100)
    await _run_until(proc, lambda: proc.stats["spans"] >= 20)
    assert _count(clickhouse, project) == 20  # both records of a call stay visible
    assert_rollups_exact(clickhouse, project, requests=16)  # ...and count once

    def requests(kind: str) -> tuple[str, float]:
        f = parse_filters(QueryParams(f"from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z&kind={kind}"))
        if kind == "all":
            del f.lists["kind"]
        mq = MetricQuery(metric="requests", aggregation="count", group_by=[], interval=None, limit=50)
        answer = run_metric(clickhouse, project, mq, f)
        [row] = answer["data"]
        return answer["source"], row["value"]

    assert requests("llm") == ("metrics_1m", 10)
    assert requests("chain") == ("metrics_1m", 6)
    assert requests("all") == ("metrics_1m", 16)
