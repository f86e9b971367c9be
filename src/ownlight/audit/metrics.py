"""Live metrics in Prometheus' text format, for the people who run the gateway.

Counters and histograms are updated as requests are recorded (one call per request,
from the record stage); gauges that describe state (circuit breakers, model load,
queue length) are read when Prometheus scrapes. Each runtime has its own registry,
so several gateways in one process (the tests) never mix their numbers.

The request path updates plain dicts (``_Counts``, ``_Histograms``: a dict lookup and an
addition, no lock, no label objects) from the event loop's thread, the only one that
records; they become Prometheus families when scraped. prometheus_client's own
``Counter``/``Histogram`` take a lock and run Python per bucket on every update, which
came to 4–5 µs a request (bench/overhead.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ownlight.audit.records import RequestRecord

CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = _Counts("ownlight_requests", "Requests by endpoint, target and status.",
                                ["endpoint", "target", "status"])
        self.latency = _Histograms("ownlight_request_seconds", "Whole request time.",
                                   ["endpoint"], LATENCY_BUCKETS)
        self.first_token = _Histograms("ownlight_time_to_first_token_seconds",
                                       "Time to the first streamed token.", ["endpoint"],
                                       LATENCY_BUCKETS)
        self.tokens = _Counts("ownlight_tokens", "Tokens in and out, by target.",
                              ["direction", "target"])
        self.egress = _Counts("ownlight_egress_requests", "Requests sent outside the domain.",
                              ["target"])
        self.egress_bytes = _Counts("ownlight_egress_bytes",
                                    "Text bytes sent outside the domain.", ["target"])
        self.pseudonymized = _Counts("ownlight_pseudonymized_entities",
                                     "Sensitive values pseudonymized on the way out, by type.",
                                     ["type"])
        self.refusals = _Counts("ownlight_refusals",
                                "Requests refused by policy: red line, budget, guard.",
                                ["reason"])
        self.injections = _Counts("ownlight_injections_flagged",
                                  "What the injection guard flagged: user turns, tool results "
                                  "and retrieved chunks.", ["where"])
        self.mcp_calls = _Counts("ownlight_mcp_tool_calls",
                                 "MCP tool calls by server, tool and outcome.",
                                 ["server", "tool", "outcome"])
        self.registry.register(_Recorded([
            self.mcp_calls, self.requests, self.latency, self.first_token, self.tokens, self.egress,
            self.egress_bytes, self.pseudonymized, self.refusals, self.injections]))

    def watch(self, read_state: Callable[[], Mapping[str, Any]]) -> None:
        """Gauges read at scrape time from ``read_state()``."""
        self.registry.register(_StateCollector(read_state))

    def observe(self, record: RequestRecord, seconds: float) -> None:
        target = record.route or "-"
        self.requests.inc((record.endpoint, target, str(record.status)))
        self.latency.observe((record.endpoint,), seconds)
        usage = record.usage
        if usage:
            self.tokens.inc(("input", target), usage.get("prompt_tokens") or 0)
            self.tokens.inc(("output", target), usage.get("completion_tokens") or 0)
        for kind, count in record.pseudonymized.items():
            self.pseudonymized.inc((kind,), count)
        refusal = REFUSALS.get(record.error_code) if record.error_code else None
        if refusal is not None:
            self.refusals.inc((refusal,))
        guard = record.injection or {}
        for where, count in (("user_input", int(bool(guard.get("input_flagged")))),
                             ("tool_result", guard.get("tool_results_flagged") or 0),
                             ("chunk", (guard.get("chunks_flagged") or 0)
                              + (guard.get("chunks_withheld") or 0))):
            if count:
                self.injections.inc((where,), count)

    def observe_first_token(self, endpoint: str, seconds: float) -> None:
        self.first_token.observe((endpoint,), seconds)

    def observe_egress(self, target: str, size: int) -> None:
        key = (target,)
        self.egress.inc(key)
        self.egress_bytes.inc(key, size)

    def render(self) -> bytes:
        return generate_latest(self.registry)


REFUSALS = {"policy_local_only": "privacy", "privacy_check_failed": "privacy",
            "sensitive_data_blocked": "privacy", "budget_exceeded": "budget",
            "injection_blocked": "guard"}


class _Counts:
    """A counter's values by label values."""

    def __init__(self, name: str, documentation: str, labels: list[str]):
        self.name, self.documentation, self.labels = name, documentation, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(list(key), value)
        return family


class _Histograms:
    """A histogram's bucket counts (not cumulative; the last but one is +Inf) and sum
    (the last) by label values."""

    def __init__(self, name: str, documentation: str, labels: list[str],
                 buckets: Iterable[float]):
        self.name, self.documentation, self.labels = name, documentation, labels
        self.bounds = [float(b) for b in buckets]
        self.values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], amount: float) -> None:
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount (le)
        counts[-1] += amount

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for key, counts in list(self.values.items()):
            running, buckets = 0.0, []
            for le, count in zip(les, counts[:-1], strict=True):
                running += count
                buckets.append((le, running))
            family.add_metric(list(key), buckets, sum_value=counts[-1])
        return family


class _Recorded(Collector):
    def __init__(self, metrics: list[_Counts | _Histograms]):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.family()


class _StateCollector(Collector):
    def __init__(self, read_state: Callable[[], Mapping[str, Any]]):
        self.read_state = read_state

    def collect(self) -> Iterator[Metric]:
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
        yield from _replica_families(state.get("replicas", {}))
        if "audit" in state:  # a shared ledger in PostgreSQL (``audit.shared``)
            yield GaugeMetricFamily(
                "ownlight_audit_behind", "Audit records journaled by this instance and not "
                "yet in the shared ledger.", value=state["audit"]["behind"])


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


REPLICA_STATES = {"up": 0, "draining": 1, "ejected": 2}


def _replica_families(pools: Mapping[str, Any]) -> Iterator[Metric]:
    """Each pooled alias's model servers (ReplicaStats): state and load as gauges, what
    they served and how often they failed as counters."""
    state = GaugeMetricFamily("ownlight_replica_state",
                              "Replica of a pool: 0 up, 1 draining, 2 ejected.",
                              labels=["model", "replica"])
    outstanding = GaugeMetricFamily("ownlight_replica_outstanding",
                                    "Requests in flight on a replica.",
                                    labels=["model", "replica"])
    counters = {
        "served": CounterMetricFamily("ownlight_replica_served",
                                      "Answers a replica started.", labels=["model", "replica"]),
        "failures": CounterMetricFamily("ownlight_replica_failures",
                                        "Failed requests and probes of a replica.",
                                        labels=["model", "replica"]),
        "ejections": CounterMetricFamily("ownlight_replica_ejections",
                                         "Times a replica was taken out of rotation.",
                                         labels=["model", "replica"]),
        "affinity_hits": CounterMetricFamily(
            "ownlight_replica_affinity_hits",
            "Requests a replica served as their prefix's first choice.",
            labels=["model", "replica"]),
        "affinity_spills": CounterMetricFamily(
            "ownlight_replica_affinity_spills",
            "Requests a replica served for a prefix whose first choice was full or out.",
            labels=["model", "replica"]),
    }
    for model, replicas in pools.items():
        for r in replicas:
            labels = [model, r.replica]
            state.add_metric(labels, REPLICA_STATES.get(r.state, 0))
            outstanding.add_metric(labels, r.outstanding)
            for attribute, family in counters.items():
                family.add_metric(labels, float(getattr(r, attribute)))
    yield state
    yield outstanding
    yield from counters.values()
