"""``make model``: rebuild the classifier artifact and everything measured about it, from scratch.

    python -m model.build [train options...]

Runs, in order: ``model.train`` (fine-tune + frozen baseline, export, int8, checks; ~30 min on
2 CPU cores), ``model.routing_quality`` (bench/results/routing_quality.*), ``model.evaluate``
(model/REPORT.md and plots) and ``model.card`` (MODEL_CARD.md, tests/scorer/golden.json). Extra
arguments go to ``model.train``. Needs ../shared; stops with exit code 3 and a message without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from model.data import SharedDataMissing, require_shared


def main(argv: Sequence[str] | None = None) -> int:
    from model import card, evaluate, routing_quality, train

    try:
        require_shared()
    except SharedDataMissing as e:
        print(f"model.build: {e}", file=sys.stderr)
        return 3
    args = list(sys.argv[1:] if argv is None else argv)
    for step, run in (("train", lambda: train.main(args)), ("routing_quality", lambda: routing_quality.main([])),
                      ("evaluate", lambda: evaluate.main([])), ("card", lambda: card.main([]))):
        print(f"== model.build: {step}", flush=True)
        rc = run()
        if rc:
            print(f"model.build: step {step} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
