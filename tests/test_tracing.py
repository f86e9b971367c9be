"""OpenTelemetry traces: sent to a real OTLP/HTTP receiver, and only when one is configured.

The receiver is a small HTTP server on 127.0.0.1 that decodes the protobuf the exporter
POSTs to ``/v1/traces``, so these tests see exactly what would reach a collector: the
span names, their parents and attributes, and every byte, which must hold neither the
key nor any of the prompt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import upstream_toml

CONTACT = "Please write to maria.gonzalez@example.com about the lighthouse contract."
ROOT = Path(__file__).resolve().parents[1]


class Receiver:
    """An OTLP/HTTP trace receiver: keeps every POST's bytes and the spans in them."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.spans: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest.FromString(body)
                    receiver.bodies.append(body)
                    receiver.spans += [span for resource in message.resource_spans
                                       for scope in resource.scope_spans for span in scope.spans]
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_each_request_is_a_span_with_its_stages_and_no_secrets(gateway_factory, cloud,
                                                               receiver) -> None:
    gateway = gateway_factory(upstream_toml("cloud", cloud.url, "fake-echo", retries=0)
                              + f'[audit]\notlp_endpoint = "{receiver.url}"\n')
    key = gateway.create_key()
    gateway.client(key).chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": CONTACT}])
    streamed = gateway.client(key).chat.completions.create(
        model="cloud", stream=True, messages=[{"role": "user", "content": "hello there"}])
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    with pytest.raises(openai.NotFoundError):
        gateway.client(key).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": CONTACT}])
    assert gateway.runtime.tracing.flush()

    requests = [s for s in receiver.spans if s.name == "ownlight.request"]
    assert sorted(attributes(s)["http.response.status_code"] for s in requests) == [200, 200, 404]
    roots = {attributes(s)["http.response.status_code"]: s for s in requests}
    ok = next(s for s in requests if "ownlight.pseudonymized.EMAIL_ADDRESS" in attributes(s))
    children = [s for s in receiver.spans if s.parent_span_id == ok.span_id]
    assert {s.name for s in children} >= {"auth", "guard", "privacy", "routing", "backend",
                                          "ledger.egress", "ledger"}
    assert all(s.trace_id == ok.trace_id and ok.start_time_unix_nano <= s.start_time_unix_nano
               <= s.end_time_unix_nano <= ok.end_time_unix_nano for s in children)
    facts = attributes(ok)
    assert facts["ownlight.target"] == "cloud/fake-echo"
    assert facts["ownlight.inside_domain"] is False
    assert facts["gen_ai.usage.input_tokens"] > 0 and facts["gen_ai.usage.output_tokens"] > 0
    assert facts["ownlight.pseudonymized.EMAIL_ADDRESS"] == 1
    backend = next(s for s in children if s.name == "backend")
    assert attributes(backend)["ownlight.target"] == "cloud/fake-echo"

    refused = {s.name: s for s in receiver.spans if s.parent_span_id == roots[404].span_id}
    assert set(refused) == {"auth", "validate", "ledger"}
    assert refused["validate"].status.code == refused["validate"].status.STATUS_CODE_ERROR
    assert attributes(roots[404])["error.type"] == "model_not_found"

    sent = b"".join(receiver.bodies)
    for secret in (key, "maria.gonzalez", "lighthouse", "contract"):
        assert secret.encode() not in sent


def test_without_an_endpoint_nothing_is_sent_and_the_sdk_is_not_loaded(
        cloud, receiver, tmp_path: Path) -> None:
    """In a fresh process: the OpenTelemetry environment variables point at the receiver,
    and still nothing arrives, because without ``audit.otlp_endpoint`` Ownlight never
    loads the SDK that would read them."""
    config = tmp_path / "ownlight.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[local]\nenabled = false\n'
                      + upstream_toml("cloud", cloud.url, "fake-echo", retries=0))
    script = textwrap.dedent(f"""
        import sys
        from ownlight.config import load_config
        from ownlight.pipeline import Pipeline
        from tests.support.gateway import RunningGateway

        gateway = RunningGateway(load_config({str(config)!r}))
        gateway.start()
        try:
            for _ in range(3):
                gateway.client().chat.completions.create(
                    model="cloud", messages=[{{"role": "user", "content": "hello"}}])
            pipeline = gateway.runtime.pipeline
            assert gateway.runtime.tracing is None
            assert pipeline.handle.__func__ is Pipeline.handle
            assert "commit" not in vars(pipeline) and "authenticate" not in vars(pipeline)
            # the API alone is a no-op (the mcp SDK imports it); the SDK and exporters,
            # which would read the OTEL_* variables and send, must not be loaded
            print(sorted(m for m in sys.modules
                         if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))))
        finally:
            gateway.stop()
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_EXPORTER": "otlp",
           "OTEL_SDK_DISABLED": "false"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    time.sleep(0.5)
    assert receiver.bodies == []
