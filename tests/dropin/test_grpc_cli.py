"""``evalforge up`` serves OTLP/gRPC on EVALFORGE_GRPC_PORT; a port in use is a one-line error."""

from __future__ import annotations

import socket
import subprocess

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.test_cli import CLI, REPO, Up, _env, data_dir  # noqa: F401 - data_dir is a fixture


def test_up_serves_otlp_grpc_with_its_key(data_dir):  # noqa: F811
    up = Up(data_dir)
    up.start()
    try:
        key = next(line.split("=", 1)[1] for line in (data_dir / "credentials").read_text().splitlines()
                   if line.startswith("EVALFORGE_API_KEY="))
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        with provider.get_tracer("cli").start_as_current_span("hello"):
            pass
        spans = memory.get_finished_spans()
        target = f"http://127.0.0.1:{up.grpc_port}"
        good = OTLPSpanExporter(endpoint=target, insecure=True, headers={"authorization": f"Bearer {key}"})
        bad = OTLPSpanExporter(endpoint=target, insecure=True, headers={"authorization": "Bearer ef_nope"})
        assert good.export(spans) == SpanExportResult.SUCCESS
        assert bad.export(spans) == SpanExportResult.FAILURE
        good.shutdown()
        bad.shutdown()
    finally:
        assert up.stop() == 0
    assert f"OTLP/gRPC on 127.0.0.1:{up.grpc_port}" in up.output


def test_grpc_port_in_use_is_one_line_naming_the_setting(migrated_postgres, redis_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([*CLI, "ingest", "--port", "0", "--data-dir", str(tmp_path)], cwd=REPO, timeout=120,
                           capture_output=True, text=True,
                           env=_env(EVALFORGE_GRPC_PORT=str(port), EVALFORGE_POSTGRES_URL=migrated_postgres,
                                    EVALFORGE_REDIS_URL=redis_url, EVALFORGE_BLOB_URL=f"file://{tmp_path}/b"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("evalforge: error: EVALFORGE_GRPC_PORT"), r.stderr
