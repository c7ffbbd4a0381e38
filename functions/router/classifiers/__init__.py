"""Name -> classifier registry. Heavy imports (onnxruntime) happen only when a mode needs them.

The registry's names are exactly the ``routing.mode`` values the config accepts
(``pickspin.config.RoutingMode``); tests/router/test_classifiers_registry.py holds them equal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pickspin.config import ServiceMatrix

from .base import Classifier, Estimate, peaked

# mode -> "module:factory"; the factory takes the ServiceMatrix.
REGISTRY: dict[str, str] = {
    "keyword": "functions.router.classifiers.keyword:KeywordClassifier.from_config",
    "semantic": "functions.router.classifiers.semantic:SemanticClassifier.from_config",
    "hybrid": "functions.router.classifiers.hybrid:HybridClassifier.from_config",
}


def classifier_ready(clf: Classifier) -> bool:
    """Classifiers that load a model say when they are done; the others are always ready."""
    check = getattr(clf, "ready", None)
    return bool(check()) if callable(check) else True


def build_classifier(mode: str, matrix: ServiceMatrix) -> Classifier:
    try:
        target = REGISTRY[mode]
    except KeyError:
        raise ValueError(f"routing.mode: unknown classifier {mode!r} (have {sorted(REGISTRY)})") from None
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    factory: Callable[[ServiceMatrix], Classifier] = obj  # type: ignore[assignment]
    return factory(matrix)


__all__ = ["REGISTRY", "Classifier", "Estimate", "build_classifier", "classifier_ready", "peaked"]
