"""Live metrics in Prometheus' text format, for the people who run the gateway.

Counters and histograms are updated as requests are recorded (one call per request,
from the record stage); gauges that describe state (circuit breakers, model load,
queue length) are read when Prometheus scrapes. Each runtime has its own registry,
so several gateways in one process (the tests) never mix their numbers.

``labels(...)`` takes a lock and builds a key on every call; the request path asks for
the same few label sets over and over, so it keeps the children it got (``_Children``)
and increments them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ownlight.audit.ledger import RequestRecord

M = TypeVar("M", Counter, Histogram)

CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ownlight_requests", "Requests by endpoint, target and status.",
                                ["endpoint", "target", "status"], registry=r)
        self.latency = Histogram("ownlight_request_seconds", "Whole request time.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("ownlight_time_to_first_token_seconds",
                                     "Time to the first streamed token.", ["endpoint"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("ownlight_tokens", "Tokens in and out, by target.",
                              ["direction", "target"], registry=r)
        self.egress = Counter("ownlight_egress_requests", "Requests sent outside the domain.",
                              ["target"], registry=r)
        self.egress_bytes = Counter("ownlight_egress_bytes",
                                    "Text bytes sent outside the domain.", ["target"],
                                    registry=r)
        self.pseudonymized = Counter("ownlight_pseudonymized_entities",
                                     "Sensitive values pseudonymized on the way out, by type.",
                                     ["type"], registry=r)
        self.refusals = Counter("ownlight_refusals",
                                "Requests refused by policy: red line, budget, guard.",
                                ["reason"], registry=r)
        self._requests = _Children(self.requests)
        self._latency = _Children(self.latency)
        self._first_token = _Children(self.first_token)
        self._tokens = _Children(self.tokens)
        self._egress = _Children(self.egress)
        self._egress_bytes = _Children(self.egress_bytes)
        self._pseudonymized = _Children(self.pseudonymized)
        self._refusals = _Children(self.refusals)

    def watch(self, read_state: Callable[[], Mapping[str, Any]]) -> None:
        """Gauges read at scrape time from ``read_state()``."""
        self.registry.register(_StateCollector(read_state))

    def observe(self, record: RequestRecord, seconds: float) -> None:
        target = record.route or "-"
        self._requests.get(record.endpoint, target, str(record.status)).inc()
        self._latency.get(record.endpoint).observe(seconds)
        usage = record.usage
        if usage:
            self._tokens.get("input", target).inc(usage.get("prompt_tokens") or 0)
            self._tokens.get("output", target).inc(usage.get("completion_tokens") or 0)
        for kind, count in record.pseudonymized.items():
            self._pseudonymized.get(kind).inc(count)
        refusal = REFUSALS.get(record.error_code) if record.error_code else None
        if refusal is not None:
            self._refusals.get(refusal).inc()

    def observe_first_token(self, endpoint: str, seconds: float) -> None:
        self._first_token.get(endpoint).observe(seconds)

    def observe_egress(self, target: str, size: int) -> None:
        self._egress.get(target).inc()
        self._egress_bytes.get(target).inc(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)


REFUSALS = {"policy_local_only": "privacy", "privacy_check_failed": "privacy",
            "sensitive_data_blocked": "privacy", "budget_exceeded": "budget",
            "injection_blocked": "guard"}


class _Children(Generic[M]):
    """A metric's children by label values, looked up once each."""

    def __init__(self, metric: M):
        self.metric: M = metric
        self.known: dict[tuple[str, ...], M] = {}

    def get(self, *values: str) -> M:
        child = self.known.get(values)
        if child is None:
            child = self.known[values] = self.metric.labels(*values)
        return child


class _StateCollector(Collector):
    def __init__(self, read_state: Callable[[], Mapping[str, Any]]):
        self.read_state = read_state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.read_state()
        circuits = GaugeMetricFamily("ownlight_circuit_state",
                                     "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
                                     labels=["target"])
        for target, value in state.get("circuits", {}).items():
            circuits.add_metric([target], CIRCUIT_STATES.get(value, 0))
        yield circuits
        ready = GaugeMetricFamily("ownlight_model_ready", "1 when a model is loaded.",
                                  labels=["model"])
        for model, value in state.get("models", {}).items():
            ready.add_metric([model], 1 if value == "ready" else 0)
        yield ready
        waiting = GaugeMetricFamily("ownlight_queue_length",
                                    "Requests waiting for an embedded model.", labels=["model"])
        for model, value in state.get("queues", {}).items():
            waiting.add_metric([model], value)
        yield waiting
        yield from _serving_gauges(state.get("serving", {}))


def _serving_gauges(serving: Mapping[str, Any]) -> Iterator[GaugeMetricFamily]:
    """Slots and throughput of backends that batch their own requests (ServingStats)."""
    gauges = {
        "slots": ("ownlight_model_slots", "Requests an embedded model can decode at once."),
        "active": ("ownlight_model_active_slots", "Requests an embedded model is decoding."),
        "tokens_per_second": ("ownlight_model_tokens_per_second",
                              "Tokens an embedded model produced per second, all requests, "
                              "over the last 10 s."),
        "prompt_tokens_reused": ("ownlight_model_prompt_tokens_reused",
                                 "Prompt tokens served from cached prefixes since start."),
    }
    for attribute, (name, help_text) in gauges.items():
        gauge = GaugeMetricFamily(name, help_text, labels=["model"])
        for model, stats in serving.items():
            gauge.add_metric([model], float(getattr(stats, attribute)))
        yield gauge
