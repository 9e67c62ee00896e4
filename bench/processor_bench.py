"""Processor benchmark: Kafka -> ClickHouse spans/s for one worker process (chDB), and the raw ceiling.

A fresh real broker (``spans.raw`` with 8 partitions) is pre-filled with ``--spans`` canonical records
(core.span.encode of what ingest produces for realistic GenAI spans, keyed by trace id). Then the real
``stream_processors.worker.SpanProcessor`` (KafkaBus from core/bus/kafka.py, chDB on a fresh migrated
dir, default batch settings) runs in this process until every span is in ClickHouse. Reported: spans/s,
peak RSS, and the raw ceiling: the same rows (sink.SPAN_COLUMNS order, already decoded and enriched)
inserted directly with ``client.insert`` in 5,000-row batches.

``--profile`` samples the measured run with py-spy (low overhead) and adds a second pass over the same records (fresh consumer group, another sink source)
under cProfile (event-loop thread + the worker's to_thread calls) and prints the top costs; its
throughput is not the figure to quote (cProfile slows Python code several-fold).

    .venv/bin/python bench/processor_bench.py [--spans 300000] [--profile]

Prints its figures; no pass/fail. Targets: >= 50,000 spans/s, >= 0.5x raw, RSS <= 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PeakRss, broker_pid, build_request, canonical_records, cpu_seconds, loadavg, print_table, py_spy_start, rss_mib,
    start_kafka, summarize_collapsed,
)

TEMPLATE_BODIES = 8
RAW_BATCH = 5000


def make_values(n: int, project_id: str) -> list[tuple[bytes, bytes]]:
    """``n`` distinct bus messages: canonical records of realistic spans with fresh ids per copy."""

    from core.span import decode, encode

    templates = [decode(v) for b in range(TEMPLATE_BODIES)
                 for _, v in canonical_records(build_request(512, seed=b).SerializeToString(), project_id)]
    out = []
    for i in range(n):
        rec = dict(templates[i % len(templates)])
        trace = f"{(i // 4) * 0x9E3779B97F4A7C15 % (1 << 128):032x}"
        rec["trace_id"] = trace
        rec["span_id"] = f"{i * 0xBF58476D1CE4E5B9 % (1 << 64):016x}"
        if rec["parent_span_id"]:
            rec["parent_span_id"] = f"{(i - i % 4) * 0xBF58476D1CE4E5B9 % (1 << 64):016x}"
        out.append((trace.encode(), encode(rec)))
    return out


def _prefill_proc(bootstrap: str, n: int) -> None:
    t = time.monotonic()
    values = make_values(n, "benchproject0001")
    size = sum(len(v) for _, v in values)
    print(f"{len(values):,} canonical records, {size / len(values):.0f} B each, built in {time.monotonic() - t:.1f} s")
    t = time.monotonic()
    asyncio.run(prefill(bootstrap, values))
    print(f"pre-filled spans.raw in {time.monotonic() - t:.1f} s", flush=True)


async def prefill(bootstrap: str, values: list[tuple[bytes, bytes]]) -> None:
    """Produce ``values`` to spans.raw through KafkaBus.publish (keyed by trace id, as ingest does)."""
    from core.bus import TOPIC_SPANS
    from core.bus.kafka import KafkaBus

    bus = KafkaBus(bootstrap, timeout_s=30)
    await bus.start()
    try:
        chunk = 20_000  # ~50 MB in flight: well inside the producer's bounded queue
        for i in range(0, len(values), chunk):
            await bus.publish(TOPIC_SPANS, values[i:i + chunk])
    finally:
        await bus.close()


async def run_worker(bootstrap: str, client, blobs, n: int, *, group: str, source_suffix: str = "",
                     profile: tuple[cProfile.Profile, cProfile.Profile] | None = None) -> dict:
    """Run one SpanProcessor until ``n`` spans are flushed; returns timings and stats."""
    from core.bus.kafka import KafkaBus
    from stream_processors.sink import ClickHouseSink
    from stream_processors.worker import SpanProcessor, collect_less_often

    collect_less_often()  # as stream_processors.service does for the processor's process
    bus = KafkaBus(bootstrap)
    await bus.start()
    processor = SpanProcessor(bus, client, blobs, group=group, name="bench-worker")
    processor.source += source_suffix
    if profile is not None:
        main_prof, thread_prof = profile
        absorb, flush = processor._absorb, ClickHouseSink.flush
        # the worker hands decode/enrich and the insert to asyncio.to_thread; profile those calls there
        processor._absorb = lambda records: thread_prof.runcall(absorb, records)  # type: ignore[method-assign]
        ClickHouseSink.flush = lambda sink: thread_prof.runcall(flush, sink)  # type: ignore[method-assign]
        main_prof.enable()
    started = time.monotonic()
    cpu0 = cpu_seconds(os.getpid())
    task = asyncio.create_task(processor.run())
    first_flush = None
    timeline = []
    try:
        while processor.stats["spans"] < n:
            if task.done():
                task.result()
                raise RuntimeError("processor stopped early")
            await asyncio.sleep(0.05)
            spans = processor.stats["spans"]
            if spans and first_flush is None:
                first_flush = (time.monotonic(), spans)
            timeline.append((time.monotonic(), spans))
        done = time.monotonic()
        cpu = cpu_seconds(os.getpid()) - cpu0
    finally:
        processor.stop()
        await task
        if profile is not None:
            profile[0].disable()
            ClickHouseSink.flush = flush  # type: ignore[method-assign]
        await bus.close()
    return {"started": started, "first_flush": first_flush, "done": done, "cpu": cpu, "stats": dict(processor.stats)}


def _sinks(client, values: list[tuple[bytes, bytes]], blobs, source: str):
    """The rows the sink builds (decoded, enriched, offloaded), ``RAW_BATCH`` per sink."""
    from core.payloads import offload_payloads
    from core.span import decode
    from stream_processors.enrich import enrich
    from stream_processors.sink import ClickHouseSink

    for start in range(0, len(values), RAW_BATCH):
        sink = ClickHouseSink(client, source)
        for offset, (_, value) in enumerate(values[start:start + RAW_BATCH], start):
            span = enrich(decode(value))
            offload_payloads(span, blobs, 32 * 1024)
            sink.add_span(span, 0, offset)
        yield sink


class NullSpans:
    """The worker's ClickHouse client, with its span inserts sent to ``bench_null.spans`` (ENGINE = Null:
    chDB parses each block and keeps nothing); every other call goes to the real tables."""

    def __init__(self, client):
        self._client = client

    def raw_insert(self, table, *args, **kwargs):
        return self._client.raw_insert("bench_null.spans" if table == "spans" else table, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def raw_ceiling(client, values: list[tuple[bytes, bytes]], blobs) -> dict:
    """Insert the same rows the sink builds (SPAN_COLUMNS order) in 5,000-row batches straight
    through clickhouse-connect; only the insert calls are timed."""
    from stream_processors.sink import SPAN_COLUMNS

    rows_done, insert_s, cpu_s = 0, 0.0, 0.0
    for sink in _sinks(client, values, blobs, "bench:raw"):
        columns = sink.span_columns()  # built before the clock: the baseline is the insert
        t, c = time.perf_counter(), time.process_time()
        rows_done += sink.span_count
        client.insert("spans", columns, column_names=SPAN_COLUMNS, column_oriented=True)
        insert_s += time.perf_counter() - t
        cpu_s += time.process_time() - c
    return {"rows": rows_done, "seconds": insert_s, "cpu": cpu_s}


def storage_ceiling(client, values: list[tuple[bytes, bytes]], blobs, table: str) -> dict:
    """chDB's own share: the same rows as Native blocks already encoded by the sink's encoder,
    each written with the one ``raw_insert`` call the sink makes; only those calls are timed."""
    from stream_processors import sink as sink_module

    rows_done, insert_s, cpu_s = 0, 0.0, 0.0
    for sink in _sinks(client, values, blobs, "bench:storage"):
        body = sink.span_block()
        t, c = time.perf_counter(), time.process_time()
        rows_done += sink.span_count
        client.raw_insert(table, sink_module.SPAN_COLUMNS, body, fmt="Native")
        insert_s += time.perf_counter() - t
        cpu_s += time.process_time() - c
    return {"rows": rows_done, "seconds": insert_s, "cpu": cpu_s}


def print_profile(main_prof: cProfile.Profile, thread_prof: cProfile.Profile, top: int) -> None:
    stats = pstats.Stats(main_prof)
    stats.add(thread_prof)
    for key, title in (("tottime", "self time"), ("cumulative", "cumulative time")):
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats(key).print_stats(top)
        lines = buf.getvalue().splitlines()
        begin = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        print(f"\n== cProfile of the worker, top {top} by {title} (both threads)")
        for line in lines[begin:begin + top + 1]:
            print("  " + line.replace(str(Path(sys.prefix)), "<venv>").replace(os.getcwd() + "/", ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=300_000, help="records pre-filled into spans.raw")
    ap.add_argument("--raw-spans", type=int, default=0, help="rows for the raw ceiling (default: --spans)")
    ap.add_argument("--profile", action="store_true", help="second pass under cProfile, print top costs")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=0, help="ignored (size is set by --spans)")
    args = ap.parse_args(argv)

    print(f"load average at start: {loadavg()}  (2 cores shared with other work)")
    root = Path(tempfile.mkdtemp(prefix="evalforge-procbench-"))
    broker = None
    try:
        broker = start_kafka(partitions=8)
        # Built and produced in a child process, so this process's RSS is the worker's alone.
        ctx = mp.get_context("spawn")
        child = ctx.Process(target=_prefill_proc, args=(broker.bootstrap, args.spans))
        child.start()
        child.join()
        if child.exitcode:
            raise RuntimeError(f"pre-fill failed with exit code {child.exitcode}")

        from core.blobs import open_blob_store
        from core.migrate import migrate_clickhouse
        from core.services import open_clickhouse

        client = open_clickhouse(f"chdb://{root / 'clickhouse'}")
        migrate_clickhouse(client)
        blobs = open_blob_store(f"file://{root / 'blobs'}")
        me, bpid = os.getpid(), broker_pid(broker)
        rss_before = rss_mib(me)
        b_cpu0 = cpu_seconds(bpid) if bpid else 0.0
        spy_out = root.parent / f"{root.name}.pyspy.txt"
        spy = py_spy_start(me, 600, spy_out) if args.profile else None  # stopped when the run ends
        with PeakRss([me]) as peak:
            res = asyncio.run(run_worker(broker.bootstrap, client, blobs, args.spans, group=f"bench-{uuid.uuid4().hex[:8]}"))
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            spy.wait(60)
        b_cpu = (cpu_seconds(bpid) - b_cpu0) if bpid else 0.0
        total = res["done"] - res["started"]
        steady = None
        if res["first_flush"] and res["done"] > res["first_flush"][0]:
            steady = (args.spans - res["first_flush"][1]) / (res["done"] - res["first_flush"][0])
        count = client.command("SELECT count() FROM spans WHERE bus_source NOT LIKE 'bench:%'")
        print_table("worker: Kafka -> SpanProcessor -> chDB, one process", [
            ("spans", f"{args.spans:,} (in ClickHouse: {count:,})"),
            ("spans/s, start to last flush (incl. group join)", f"{args.spans / total:,.0f}"),
            ("spans/s, first flush to last flush", f"{steady:,.0f}" if steady else "n/a (one flush)"),
            ("wall s", f"{total:.1f}"),
            ("worker process CPU (cores)", f"{res['cpu'] / total:.2f}"),
            ("worker CPU per span us (contention-proof)", f"{res['cpu'] / args.spans * 1e6:.0f}"
             f"  -> {args.spans / res['cpu']:,.0f} spans per CPU-second"),
            ("broker CPU (cores)", f"{b_cpu / total:.2f}"),
            ("RSS before / peak MiB", f"{rss_before:.0f} / {peak.peak[me]:.0f}  (budget <= 1024)"),
            ("stats", res["stats"]),
            ("load average", loadavg()),
        ])
        # The roller (a task beside the worker in `evalforge process`): each minute those spans fall in,
        # rolled once from the deduplicated spans, as it does once a minute is quiet.
        from stream_processors.roller import roll_due

        roll_cpu0, roll_t0 = cpu_seconds(me), time.monotonic()
        rolled = roll_due(client)
        roll_s, roll_cpu = time.monotonic() - roll_t0, cpu_seconds(me) - roll_cpu0
        print_table("roller: the minutes of those spans rolled once (metrics_1m, metrics_user_1m)", [
            ("minutes rolled", f"{rolled:,}"),
            ("seconds", f"{roll_s:.2f}"),
            ("CPU per span us", f"{roll_cpu / args.spans * 1e6:.1f}"),
            ("worker + roller CPU per span us", f"{(res['cpu'] + roll_cpu) / args.spans * 1e6:.0f}"),
        ])
        raw = raw_ceiling(client, make_values(args.raw_spans or args.spans, "benchproject0001"), blobs)
        raw_rate = raw["rows"] / raw["seconds"]
        print_table("raw ceiling: clickhouse-connect client.insert of the same rows, 5,000 per batch", [
            ("rows", f"{raw['rows']:,}"),
            ("rows/s (insert calls only)", f"{raw_rate:,.0f}"),
            ("CPU cores during the inserts", f"{raw['cpu'] / raw['seconds']:.2f}"),
            ("insert CPU per row us", f"{raw['cpu'] / raw['rows'] * 1e6:.0f}"),
            ("load average", loadavg()),
        ])
        # chDB alone, fed pre-encoded blocks: into `spans` with its views (what every insert of the
        # sink costs), and into a copy of `spans` without views (the base table's own share)
        storage_values = make_values(args.raw_spans or args.spans, "benchproject0002")
        client.command("CREATE DATABASE IF NOT EXISTS bench_bare")
        client.command("CREATE TABLE bench_bare.spans AS spans")
        storage = {name: storage_ceiling(client, storage_values, blobs, table)
                   for name, table in (("spans and its views", "spans"), ("spans alone, no views", "bench_bare.spans"))}
        print_table("storage ceiling: chDB raw_insert of pre-encoded Native blocks, 5,000 rows each (nothing else)", [
            row for name, st in storage.items() for row in (
                (f"{name}: rows/s", f"{st['rows'] / st['seconds']:,.0f}"),
                (f"{name}: CPU per row us / cores", f"{st['cpu'] / st['rows'] * 1e6:.1f} / {st['cpu'] / st['seconds']:.2f}"),
            )
        ])
        # The processor's own share: the same worker and records, its span inserts parsed by chDB into a
        # Null-engine copy of `spans` (no parts, no views), as if ClickHouse ran on other machines
        client.command("CREATE DATABASE IF NOT EXISTS bench_null")
        client.command("CREATE TABLE bench_null.spans AS spans ENGINE = Null")
        null = asyncio.run(run_worker(broker.bootstrap, NullSpans(client), blobs, args.spans,
                                      group=f"bench-null-{uuid.uuid4().hex[:8]}", source_suffix="#null"))
        null_s = null["done"] - null["started"]
        null_rate = ((args.spans - null["first_flush"][1]) / (null["done"] - null["first_flush"][0])
                     if null["first_flush"] and null["done"] > null["first_flush"][0] else args.spans / null_s)
        print_table("processor without storage: the same worker, span inserts into a Null-engine table", [
            ("spans/s, first flush to last flush", f"{null_rate:,.0f}"),
            ("worker process CPU (cores)", f"{null['cpu'] / null_s:.2f}"),
            ("worker CPU per span us", f"{null['cpu'] / args.spans * 1e6:.1f}"
             f"  -> {args.spans / null['cpu']:,.0f} spans per CPU-second"),
            ("load average", loadavg()),
        ])
        worker_rate = steady or args.spans / total
        print_table("summary", [
            ("worker spans/s", f"{worker_rate:,.0f}  (target >= 50,000)"),
            ("raw insert rows/s", f"{raw_rate:,.0f}"),
            ("worker / raw", f"{worker_rate / raw_rate:.2f}  (target >= 0.5)"),
            ("peak RSS MiB", f"{peak.peak[me]:.0f}  (budget <= 1024)"),
        ])
        if spy is not None and spy_out.exists():
            print_table(f"py-spy of the worker run (sampling, both threads; {spy_out})", summarize_collapsed(spy_out, 20))
        if args.profile:
            profs = (cProfile.Profile(), cProfile.Profile())
            res = asyncio.run(run_worker(broker.bootstrap, client, blobs, args.spans, group=f"bench-prof-{uuid.uuid4().hex[:8]}",
                                         source_suffix="#profile", profile=profs))
            took = res["done"] - res["started"]
            print(f"\n(profiled pass: {args.spans / took:,.0f} spans/s under cProfile - not a throughput figure)")
            print_profile(*profs, args.top)
    finally:
        if broker is not None:
            broker.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
