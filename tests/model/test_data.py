"""Label rule and question-level splits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model.data import LABELS, MEDIUM, SMALL, Question, label_of, load_questions, split, split_manifest
from tests.helpers import REPO, subprocess_env


def outcomes(small: float, big: float) -> dict[str, int | None]:
    oc: dict[str, int | None] = {}
    for i, m in enumerate(SMALL):
        oc[m] = int(i < round(small * len(SMALL)))
    from model.data import LARGE

    bigs = MEDIUM + LARGE
    for i, m in enumerate(bigs):
        oc[m] = int(i < round(big * len(bigs)))
    return oc


def test_label_rule() -> None:
    assert label_of(outcomes(0.5, 0.0)) == "low"  # a small-tier majority suffices
    assert label_of(outcomes(0.43, 1.0)) == "medium"  # small tier fails, bigger models' majority answers
    assert label_of(outcomes(0.43, 0.46)) == "high"  # only a minority of big models
    assert label_of(outcomes(0.0, 0.0)) == "high"  # nobody
    oc = outcomes(0.0, 1.0)
    for m in MEDIUM:
        oc[m] = None  # missing outcomes are ignored in the vote
    assert label_of(oc) == "medium"


def synthetic(n: int) -> list[Question]:
    srcs = ["ori_mmlu-x", "stemez-y", "theoremQA-z", "scibench-w"]
    return [Question(str(i), "math", srcs[i % 4], f"q{i}", {}, LABELS[(i // 4) % 3]) for i in range(n)]


def test_split_is_disjoint_complete_stratified_and_seeded() -> None:
    qs = synthetic(1200)
    a = split(qs, seed=1)
    ids = [set(q.qid for q in v) for v in a.values()]
    assert sum(len(s) for s in ids) == 1200 and len(set().union(*ids)) == 1200
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for part, share in (("val", 0.15), ("test", 0.15)):
        for lab in LABELS:
            n = sum(1 for q in a[part] if q.label == lab)
            assert abs(n - share * 400) <= 4  # stratified: every class gets its share
    assert split_manifest(split(qs, seed=1))["digest"] == split_manifest(a)["digest"]
    assert split_manifest(split(qs, seed=2))["digest"] != split_manifest(a)["digest"]


def test_real_matrix_labels_and_shipped_split(shared_matrix: Path) -> None:
    qs = load_questions()
    assert len(qs) == 12032 and len({q.qid for q in qs}) == 12032
    counts = {lab: sum(q.label == lab for q in qs) for lab in LABELS}
    assert all(c > 1000 for c in counts.values()), counts
    training = json.loads((REPO / "model/artifacts/complexity-minilm/training.json").read_text())
    # the shipped model (model.heads build) trained on every MMLU-Pro question, split into three families
    fams = {f: c for f, c in training["families"].items() if f.startswith("mmlu_pro:")}
    assert len(fams) == 3
    for lab in LABELS:
        assert sum(c[lab] for c in fams.values()) == counts[lab]


@pytest.mark.parametrize("module", ["model.train", "model.evaluate", "model.routing_quality", "model.build"])
def test_scripts_stop_cleanly_without_shared(module: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", module], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env=subprocess_env(PICKSPIN_SHARED=str(tmp_path / "nowhere")))
    assert r.returncode == 3, r.stderr[-2000:]
    assert "../shared" in r.stderr and "Traceback" not in r.stderr
