"""The package map holds: each layer imports only the layers below it (docs/architecture.md).

    stack/                      top: CLI, local stack + activator, sim backends, simulator, k8s tooling
    functions/  pickspin_scaler components: router + scorer (Pick), KEDA scaler (Spin)
    pickspin/                   floor: config, contract, errors, serving, procs

Every import statement counts, including those inside functions (lazy imports are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

OURS = ("pickspin", "functions", "pickspin_scaler", "stack", "model", "bench", "tests")
# package (as a path prefix) -> top-level packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "pickspin": {"pickspin"},
    "functions": {"pickspin", "functions"},
    "keda-scaler/pickspin_scaler": {"pickspin", "pickspin_scaler"},
    "stack": {"pickspin", "functions", "pickspin_scaler", "stack"},
}


def imports_of(path: Path, package: str) -> set[str]:
    """Top-level names of our packages imported by ``path`` (relative imports resolve to ``package``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add(package if node.level else (node.module or "").split(".")[0])
    return {m for m in out if m in OURS}


def files(prefix: str) -> list[Path]:
    return sorted(p for p in (REPO / prefix).rglob("*.py") if "_generated" not in p.parts)


@pytest.mark.parametrize("prefix", sorted(ALLOWED))
def test_layer_imports_only_what_is_below_it(prefix: str) -> None:
    package = Path(prefix).name
    bad = {f"{p.relative_to(REPO)} imports {sorted(imports_of(p, package) - ALLOWED[prefix])}"
           for p in files(prefix) if imports_of(p, package) - ALLOWED[prefix]}
    assert files(prefix) and not bad, sorted(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import stack.cli\n    from functions.router import app\nfrom . import x\n")
    assert imports_of(f, "pickspin") == {"stack", "functions", "pickspin"}
