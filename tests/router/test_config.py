from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pickspin.config import DEFAULT_CONFIG, PAPER_PROFILES, ConfigError, load_config, parse_config

BASE: dict[str, Any] = {
    "models": [{
        "name": "m1", "tier": "small", "capability": {"low": 1, "medium": 0.5, "high": 0.1},
        "cost": {"per_1k_tokens": 0.1},
        "backends": [{"name": "b1", "url": "http://127.0.0.1:9", "served_model_name": "x"}],
    }],
}


def bad(mutate: Any) -> str:
    cfg = copy.deepcopy(BASE)
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        parse_config(cfg, "test.yaml")
    return str(e.value)


def test_local_config_loads_with_the_paper_profiles() -> None:
    m = load_config(DEFAULT_CONFIG)
    assert [x.tier for x in m.models] == ["small", "medium", "large"]
    for name, p in PAPER_PROFILES.items():
        assert m.profiles[name] == p
    assert m.profiles["quality"].weights() == pytest.approx((1.0 / 1.2, 0.1 / 1.2, 0.1 / 1.2))
    assert m.profiles["cost"].weights() == pytest.approx((0.3 / 1.3, 0.2 / 1.3, 0.8 / 1.3))
    # the simulated tiers say so
    assert [b.simulated for x in m.models for b in x.backends] == [False, True, True]


def test_user_profiles_extend_and_override() -> None:
    cfg = copy.deepcopy(BASE)
    cfg["profiles"] = {"mine": {"alpha": 2, "lambda": 0, "mu": 0}, "cost": {"alpha": 1, "lambda": 1, "mu": 1}}
    cfg["routing"] = {"default_profile": "mine"}
    m = parse_config(cfg)
    assert m.profiles["mine"].weights() == (1.0, 0.0, 0.0)
    assert m.profiles["cost"].weights() == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert "quality" in m.profiles


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: c["models"][0]["backends"][0].update(url="ftp://x"), "models[0].backends[0].url"),
        (lambda c: c["models"][0].update(tier="huge"), "models[0].tier"),
        (lambda c: c["models"][0]["capability"].update(high=1.5), "models[0].capability.high"),
        (lambda c: c["models"][0].update(cost={}), "set exactly one of per_1k_tokens or per_gpu_second"),
        (lambda c: c["models"][0]["backends"][0].update(kind="ollama"), "models[0].backends[0].kind"),
        (lambda c: c["models"][0]["backends"][0].update(max_concurrency=0), "models[0].backends[0].max_concurrency"),
        (lambda c: c["models"][0].update(colour="red"), "models[0].colour"),
        (lambda c: c.update(models=[]), "models"),
        (lambda c: c.update(routing={"default_profile": "fastest"}), "routing.default_profile"),
        (lambda c: c.update(routing={"mode": "magic"}), "routing.mode"),
        (lambda c: c.update(profiles={"z": {"alpha": 0, "lambda": 0, "mu": 0}}), "profiles.z"),
        (lambda c: c["models"].append(copy.deepcopy(c["models"][0])), "reserved or duplicated"),
        # issue 10's settings
        (lambda c: c["models"][0].update(endpoints=["images"]), "models[0].endpoints[0]"),
        (lambda c: c["models"][0].update(endpoints=[]), "models[0].endpoints"),
        (lambda c: c.update(router={"breaker_consecutive_failures": 0}), "router.breaker_consecutive_failures"),
        (lambda c: c.update(router={"breaker_cooldown_s": 0}), "router.breaker_cooldown_s"),
        (lambda c: c.update(router={"breaker_min_samples": 0}), "router.breaker_min_samples"),
        (lambda c: c.update(router={"breaker_half_open_requests": 0}), "router.breaker_half_open_requests"),
        (lambda c: c.update(router={"stream_idle_timeout_s": -1}), "router.stream_idle_timeout_s"),
        (lambda c: c.update(router={"total_timeout_s": 0}), "router.total_timeout_s"),
        (lambda c: c.update(router={"client_request_timeout_s": 0}), "router.client_request_timeout_s"),
        (lambda c: c.update(router={"max_buffered_response_bytes": 10}), "router.max_buffered_response_bytes"),
        (lambda c: c.update(router={"max_json_depth": 1}), "router.max_json_depth"),
    ],
)
def test_validation_errors_name_the_field(mutate: Any, needle: str) -> None:
    msg = bad(mutate)
    assert "invalid config test.yaml" in msg
    assert needle in msg


def test_mixed_cost_units_are_rejected() -> None:
    def mutate(c: dict[str, Any]) -> None:
        m2 = copy.deepcopy(c["models"][0])
        m2["name"] = "m2"
        m2["backends"][0]["name"] = "b2"
        m2["cost"] = {"per_gpu_second": 0.001}
        c["models"].append(m2)

    assert "one cost unit" in bad(mutate)


def test_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)
