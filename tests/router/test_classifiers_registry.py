"""The classifier registry is real: a registered name is a mode the config accepts, and the reverse."""

from __future__ import annotations

from typing import get_args

import pytest

from functions.router.classifiers import REGISTRY, build_classifier, classifier_ready
from pickspin.config import ConfigError, RoutingMode
from tests.helpers import trio_matrix, wait_until

URLS = {"small": ["http://127.0.0.1:9"]}


def test_registry_names_are_the_config_modes() -> None:
    assert set(REGISTRY) == set(get_args(RoutingMode))


@pytest.mark.parametrize("mode", sorted(REGISTRY))
def test_every_mode_loads_from_config_and_builds(mode: str) -> None:
    matrix = trio_matrix(URLS, routing={"mode": mode})
    assert matrix.routing.mode == mode
    clf = build_classifier(mode, matrix)
    # a model-backed classifier loads in a background thread: let it finish inside this test, so its
    # imports never race another test's
    assert wait_until(lambda: classifier_ready(clf), 120)
    assert clf.classify("list three colours").label in ("low", "medium", "high")


def test_an_unregistered_mode_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"routing\.mode"):
        trio_matrix(URLS, routing={"mode": "magic"})
