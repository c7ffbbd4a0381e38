"""``make model``: rebuild the classifier artifact and everything measured about it, from scratch.

    python -m model.build [train options...]

Runs, in order: ``model.heads embed`` (pooled embeddings of every prompt of every task family with
the frozen int8 encoder, cached in model/work/; ~15 min on one core), ``model.heads build`` (the
two-stage head on all training families, written into the int8 artifact), ``model.lofo``
(leave-one-family-out evaluation, bench/results/lofo.*) and ``model.card`` (MODEL_CARD.md,
tests/scorer/golden.json). Extra arguments go to ``model.heads build``. The earlier MMLU-Pro-only
fine-tune is still ``python -m model.train`` (then ``model.evaluate``, ``model.routing_quality``).
Needs ../shared; stops with exit code 3 and a message without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from model.data import SharedDataMissing, require_shared


def main(argv: Sequence[str] | None = None) -> int:
    from model import card, heads, lofo

    try:
        require_shared()
    except SharedDataMissing as e:
        print(f"model.build: {e}", file=sys.stderr)
        return 3
    args = list(sys.argv[1:] if argv is None else argv)
    for step, run in (("embed", lambda: heads.main(["embed"])), ("build", lambda: heads.main(["build", *args])),
                      ("lofo", lambda: lofo.main(["--new-artifact", str(card.ART)])), ("card", lambda: card.main([]))):
        print(f"== model.build: {step}", flush=True)
        rc = run()
        if rc:
            print(f"model.build: step {step} failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
