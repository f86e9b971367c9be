"""OpenTelemetry traces, for operators who already collect them: off unless configured.

With ``audit.otlp_endpoint`` set, each request becomes one span (``ownlight.request``)
with a child span per pipeline stage it went through (auth, knowledge, guard, privacy,
routing, backend, ledger), exported over OTLP/HTTP in batches from a background thread.
Spans carry what the ledger's indexes carry (route, target, inside or outside the
domain, status, token counts), never a prompt, an answer or a key.

Without the setting nothing here runs: the OpenTelemetry SDK is not even imported and
the pipeline reports to an observer that does nothing. With it, ``instrument`` hands
that one pipeline a ``TraceObserver`` that notes when each step (stage, routing, backend,
egress protection and record) started and ended; the spans are made from those notes
once the request's record is committed, so a step costs two clock reads and no SDK call
while the request is in flight.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ownlight.audit.records import RequestRecord
from ownlight.auth import KeyStore, Origin
from ownlight.principal import Principal
from ownlight.stages.base import Observer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from ownlight.pipeline import Pipeline

class TimedKeyStore(KeyStore):
    """The key store, each check timed for the request's trace: its times wait in a context
    variable until the request's trace begins (the check comes before the pipeline)."""

    def authenticate(self, key: str | None, origin: Origin | None = None) -> Principal:
        start, failed = time.time_ns(), True
        try:
            principal = super().authenticate(key, origin)
            failed = False
            return principal
        finally:
            _key_check.set((start, time.time_ns(), failed))


@dataclass
class RequestTrace:
    """What one request's stages noted: (span name, start ns, end ns, failed)."""

    start: int = field(default_factory=time.time_ns)
    stages: list[tuple[str, int, int, bool]] = field(default_factory=list)


_current: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "ownlight_trace", default=None)
# The HTTP routes check the key before the pipeline runs (strangers learn nothing, not
# even by timing the body's parsing): the check's times wait here for the request's trace.
_key_check: contextvars.ContextVar[tuple[int, int, bool] | None] = contextvars.ContextVar(
    "ownlight_key_check", default=None)


def traces_url(endpoint: str) -> str:
    """An OTLP/HTTP collector's base URL, or its full traces URL, as the traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    """One pipeline's exporter: spans go to ``endpoint`` and nowhere else."""

    def __init__(self, endpoint: str):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from ownlight import __version__

        self.endpoint = traces_url(endpoint)
        # A provider of its own (not the process-wide one): nothing else in the
        # process, a library included, can send spans through it or change where it sends.
        self.provider: TracerProvider = TracerProvider(resource=Resource.create(
            {"service.name": "ownlight", "service.version": __version__}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=self.endpoint, timeout=5)))
        self.tracer = self.provider.get_tracer("ownlight.pipeline", __version__)

    def instrument(self, pipeline: Pipeline) -> None:
        """Time each step of this pipeline: it reports to a ``TraceObserver`` instead of
        the observer that does nothing. (The key check, which the HTTP routes make before
        the pipeline runs, is timed by ``TimedKeyStore``, which the runtime builds instead
        of a plain key store when tracing is on.)"""
        pipeline.observer = TraceObserver(self)

    def export(self, trace: RequestTrace, record: RequestRecord) -> None:
        """The request's span and its stages' spans, handed to the batch exporter."""
        from opentelemetry import trace as otel
        from opentelemetry.trace import Status, StatusCode

        end = time.time_ns()
        root = self.tracer.start_span("ownlight.request", start_time=trace.start,
                                      kind=otel.SpanKind.SERVER,
                                      attributes=_request_attributes(record))
        if record.status >= 500:
            root.set_status(Status(StatusCode.ERROR, record.error_code or ""))
        parent = otel.set_span_in_context(root)
        for name, start, stop, failed in trace.stages:
            attributes = _backend_attributes(record) if name == "backend" else None
            span = self.tracer.start_span(name, context=parent, start_time=start,
                                          attributes=attributes)
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end(stop)
        root.end(end)

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def close(self) -> None:
        self.provider.shutdown()


class TraceObserver(Observer):
    """Notes when each step of a request started and ended; exports the request's spans
    once its record is committed. A stream's record is committed after ``handle`` has
    returned, from whichever task sends the stream, so traces wait by request id."""

    def __init__(self, tracing: Tracing):
        self.tracing = tracing
        self.open: dict[str, RequestTrace] = {}

    def begin(self, request_id: str) -> None:
        trace = RequestTrace()
        checked, _ = _key_check.get(), _key_check.set(None)
        if checked is not None:
            trace.start = checked[0]
            trace.stages.append(("auth", *checked))
        _current.set(trace)
        self.open[request_id] = trace

    def drop(self, request_id: str) -> None:
        self.open.pop(request_id, None)

    @staticmethod
    @contextmanager
    def step(name: str) -> Iterator[None]:
        trace, start, failed = _current.get(), time.time_ns(), True
        try:
            yield
            failed = False
        finally:
            if trace is not None:
                trace.stages.append((name, start, time.time_ns(), failed))

    @contextmanager
    def committing(self, record: RequestRecord) -> Iterator[None]:
        start = time.time_ns()
        try:
            yield
        finally:
            trace = self.open.pop(record.request_id, None)
            if trace is not None:
                trace.stages.append(("ledger", start, time.time_ns(), False))
                self.tracing.export(trace, record)


def _request_attributes(record: RequestRecord) -> dict[str, Any]:
    """What the ledger's indexes hold, and token counts: no bodies, no keys, no names."""
    attributes: dict[str, Any] = {
        "ownlight.request_id": record.request_id,
        "ownlight.operation": record.operation,
        "http.route": record.endpoint,
        "http.response.status_code": record.status,
        "ownlight.sensitivity": record.sensitivity or "unknown",
    }
    optional = {"ownlight.model": record.model, "ownlight.target": record.route,
                "ownlight.inside_domain": record.inside_domain,
                "ownlight.route_reason": record.reason, "error.type": record.error_code}
    attributes.update({k: v for k, v in optional.items() if v is not None})
    usage = record.usage or {}
    for key, attribute in (("prompt_tokens", "gen_ai.usage.input_tokens"),
                           ("completion_tokens", "gen_ai.usage.output_tokens")):
        if isinstance(usage.get(key), int):
            attributes[attribute] = usage[key]
    for kind, count in record.pseudonymized.items():
        attributes[f"ownlight.pseudonymized.{kind}"] = count
    return attributes


def _backend_attributes(record: RequestRecord) -> dict[str, Any]:
    return {k: v for k, v in (("ownlight.target", record.route),
                              ("ownlight.inside_domain", record.inside_domain))
            if v is not None}
