"""scalerMetadata parsing: typed, defaults, every bad key named, PromQL flavours and overrides."""

from __future__ import annotations

import pytest

from pickspin_scaler.metadata import MetadataError, parse_metadata


def test_minimal_and_defaults() -> None:
    md = parse_metadata({"model": "llama-3.1-70b"})
    assert (md.concurrency, md.window_seconds, md.idle_seconds, md.floor()) == (4, 300.0, 300.0, 0)
    assert md.prometheus_address is None and md.query_flavor == "router"
    assert md.metric_name() == "pickspin-llama-3-1-70b-concurrency"


def test_keda_strings_are_parsed_and_its_own_keys_ignored() -> None:
    md = parse_metadata({"scalerAddress": "scaler:6000", "unsafeSsl": "false", "model": "m", "tier": "large",
                         "concurrency": "8", "warmPool": "2", "idleSeconds": "60.5", "windowSeconds": "30",
                         "prometheusAddress": "http://prom:9090/"})
    assert (md.concurrency, md.warm_pool, md.idle_seconds, md.window_seconds) == (8, 2, 60.5, 30.0)
    assert md.floor() == 2
    assert md.prometheus_address == "http://prom:9090"


@pytest.mark.parametrize(("tier", "floor"), [("small", 1), ("medium", 0), ("large", 0), (None, 0)])
def test_floor_defaults_to_the_tier(tier: str | None, floor: int) -> None:
    raw = {"model": "m"} | ({"tier": tier} if tier else {})
    assert parse_metadata(raw).floor() == floor


@pytest.mark.parametrize(("raw", "key"), [
    ({}, "model"),
    ({"model": ""}, "model"),
    ({"model": 'a"b'}, "model"),
    ({"model": "m", "concurrency": "abc"}, "concurrency"),
    ({"model": "m", "concurrency": "0"}, "concurrency"),
    ({"model": "m", "warmPool": "-1"}, "warmPool"),
    ({"model": "m", "idleSeconds": "soon"}, "idleSeconds"),
    ({"model": "m", "idleSeconds": "nan"}, "idleSeconds"),
    ({"model": "m", "windowSeconds": "0"}, "windowSeconds"),
    ({"model": "m", "tier": "huge"}, "tier"),
    ({"model": "m", "prometheusAddress": "prom:9090"}, "prometheusAddress"),
    ({"model": "m", "queryFlavor": "tgi"}, "queryFlavor"),
    ({"model": "m", "rateQuery": "sum(rate(x{model=\"${modle}\"}[1m]))"}, "rateQuery"),
    ({"model": "m", "servedModelName": "x"}, "servedModelName"),
])
def test_bad_metadata_names_the_key(raw: dict[str, str], key: str) -> None:
    with pytest.raises(MetadataError) as ei:
        parse_metadata(raw)
    assert ei.value.key == key
    assert f"scalerMetadata.{key}:" in str(ei.value)


def test_router_queries_default() -> None:
    q = parse_metadata({"model": "m", "windowSeconds": "20", "idleSeconds": "7.5"}).queries()
    assert q["rate"] == 'sum(rate(pickspin_requests_total{model="m"}[20s]))'
    assert q["latency"] == ('sum(rate(pickspin_request_duration_seconds_sum{model="m"}[20s]))'
                            ' / sum(rate(pickspin_request_duration_seconds_count{model="m"}[20s]))')
    assert q["demand"] == 'sum(pickspin_inflight_requests{model="m"})'
    assert q["recent"] == 'sum(increase(pickspin_requests_total{model="m"}[8s]))'


def test_vllm_flavour_and_overrides() -> None:
    md = parse_metadata({"model": "llama", "queryFlavor": "vllm", "servedModelName": "meta-llama/L-70B",
                         "demandQuery": 'max(my_queue{m="${model}"})'})
    q = md.queries()
    assert q["rate"] == 'sum(rate(vllm:e2e_request_latency_seconds_count{model_name="meta-llama/L-70B"}[300s]))'
    assert "vllm:e2e_request_latency_seconds_sum" in q["latency"]
    assert q["demand"] == 'max(my_queue{m="meta-llama/L-70B"})'
    v = parse_metadata({"model": "llama", "queryFlavor": "vllm"}).queries()
    assert v["demand"] == ('sum(vllm:num_requests_running{model_name="llama"})'
                           ' + sum(vllm:num_requests_waiting{model_name="llama"})')


def test_metadata_from_service_matrix() -> None:
    from pathlib import Path

    from pickspin_scaler.cli import metadata_from_config

    cfg = Path(__file__).resolve().parents[2] / "config" / "local.yaml"
    mds = {m.model: m for m in metadata_from_config(str(cfg))}
    assert mds["smollm2-135m"].floor() == 1 and mds["smollm2-135m"].concurrency == 2
    assert mds["llama-3.1-70b-sim"].floor() == 0 and mds["llama-3.1-70b-sim"].concurrency == 8


def test_metrics_namespace_filters_every_default_query() -> None:
    """Two releases sharing a Prometheus and model names must not see each other's series (issue 12, item 7)."""
    for flavor, label in (("router", "model"), ("vllm", "model_name")):
        q = parse_metadata({"model": "m", "queryFlavor": flavor, "metricsNamespace": "team-a"}).queries()
        for name, promql in q.items():
            n_selectors = promql.count("{")
            assert n_selectors >= 1 and promql.count('namespace="team-a"') == n_selectors, (flavor, name, promql)
            assert f'{label}="m"' in promql
        assert "namespace" not in "".join(parse_metadata({"model": "m", "queryFlavor": flavor}).queries().values())
    custom = parse_metadata({"model": "m", "metricsNamespace": "b", "demandQuery": 'sum(q{ns="${namespace}"})'})
    assert custom.queries()["demand"] == 'sum(q{ns="b"})'
    with pytest.raises(MetadataError) as ei:
        parse_metadata({"model": "m", "metricsNamespace": 'a"}) or vector(1'})
    assert ei.value.key == "metricsNamespace"
