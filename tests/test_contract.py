"""pickspin.contract is the one definition; what cannot import it (Go templates, JSON dashboards, the
metrics a live router exposes) is checked against it here."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import CollectorRegistry

from functions.router.metrics import RouterMetrics
from pickspin import contract
from pickspin.config import ServiceMatrix
from pickspin_scaler.metadata import ScalerMetadata, parse_metadata
from tests.helpers import REPO, trio_matrix

ROUTER_METRICS = {contract.REQUESTS_TOTAL, contract.REQUEST_DURATION, contract.TTFT, contract.INFLIGHT,
                  contract.DECISION_DURATION, contract.UPSTREAM_RETRIES, contract.CLASSIFIER_FALLBACKS,
                  contract.BACKEND_UP, contract.DOWNGRADES, contract.BACKEND_CIRCUIT, contract.CIRCUIT_TRANSITIONS}


def _base(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count|created)$", "", sample)


def test_router_exposes_exactly_the_contract_metrics() -> None:
    m = RouterMetrics(CollectorRegistry())
    names = {f.name + ("_total" if f.type == "counter" else "") for f in m.registry.collect()}
    assert names == ROUTER_METRICS


def test_default_queries_use_contract_metrics_and_known_placeholders() -> None:
    for q in contract.ROUTER_QUERIES.values():
        used = {_base(n) for n in re.findall(r"pickspin_[a-z_]+", q)}
        assert used and used <= ROUTER_METRICS, q
    assert set(contract.ROUTER_QUERIES) == set(contract.VLLM_QUERIES) == set(contract.QUERY_KEYS)
    md = ScalerMetadata(model="m", idleSeconds=60, windowSeconds=30)
    assert md.queries()["rate"] == 'sum(rate(pickspin_requests_total{model="m"}[30s]))'


def test_dashboard_names_only_metrics_that_exist() -> None:
    text = (REPO / "helm/pickspin/files/grafana-dashboard.json").read_text()
    json.loads(text)
    router = {_base(n) for n in re.findall(r"pickspin_[a-z_]+", text) if not n.startswith("pickspin_scaler_")}
    assert router and router <= ROUTER_METRICS, router - ROUTER_METRICS


def test_chart_tier_floors_are_the_contract_floors() -> None:
    values = yaml.safe_load((REPO / "helm/pickspin/values.yaml").read_text())
    assert {t: v["warm_pool"] for t, v in values["tiers"].items()} == contract.TIER_WARM_POOL
    assert {t: v.warm_pool for t, v in ServiceMatrix.model_fields["tiers"].default_factory().items()} \
        == contract.TIER_WARM_POOL  # type: ignore[misc]


def test_trigger_metadata_round_trips_through_the_scaler_model() -> None:
    matrix = trio_matrix({"small": ["http://127.0.0.1:9"], "large": ["http://127.0.0.1:10"]})
    for m in matrix.models:
        md = contract.trigger_metadata(matrix, m, window_seconds=45, prometheus_address="http://prom:9090")
        assert all(isinstance(v, str) for v in md.values())
        parsed = parse_metadata(md)
        assert (parsed.model, parsed.tier, parsed.concurrency, parsed.floor(), parsed.idle_seconds,
                parsed.window_seconds) == (m.name, m.tier, m.scaling.concurrency, matrix.warm_pool(m),
                                           m.scaling.idle_seconds, 45)
    small = matrix.models[0]
    assert contract.trigger_metadata(matrix, small)["warmPool"] == str(contract.TIER_WARM_POOL["small"])


def test_backend_states_the_router_treats_as_warm() -> None:
    assert {contract.BackendState.READY, contract.BackendState.STARTING} == contract.WARM_STATES
    assert {s.value for s in contract.BackendState} == {"cold", "starting", "ready", "stopping"}
