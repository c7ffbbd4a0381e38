"""What can keep-warm achieve on one stream at all? One replica, gaps between busy periods, a load time L.

For a trace (default: the ServeGen m-large median stream, days 1-5, as ``pickspin sim`` replays it) this
prints, per load time L:

* the clairvoyant bound: warm exactly when needed (a gap g costs min(g, L): stay warm, or reload just in
  time), SLO 1.0 - it needs to know when every burst starts;
* fixed tau: a gap longer than tau ends in a cold start (and its SLO misses), else it is bridged;
* hindsight: go cold only on the k longest gaps (the best any tau-like rule that knows the gaps, but not
  when they come, could hope for).

All in GPU-seconds per query for a one-GPU replica, busy time = the union of [arrival, arrival + service_s].

    .venv/bin/python scripts/keep_warm_bounds.py [--trace servegen:m-large] [--hours 120]
"""

from __future__ import annotations

import argparse

import numpy as np

from stack.sim.trace import build_trace


def gaps_and_busy(t: np.ndarray, service_s: float) -> tuple[np.ndarray, float]:
    t = np.sort(t)
    reach = np.maximum.accumulate(t + service_s)
    gaps = np.clip(t[1:] - reach[:-1], 0, None)
    return gaps, float(reach[-1] - t[0] - gaps.sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default="servegen:m-large")
    ap.add_argument("--hours", type=float, default=120.0)
    ap.add_argument("--service-s", type=float, default=1.0, help="service time per request (s)")
    ap.add_argument("--loads", type=float, nargs="+", default=[80.0, 20.0])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    tr = build_trace(a.trace, hours=a.hours, rate_per_day=None, scale="stretch", rng=np.random.default_rng(a.seed))
    n = len(tr)
    gaps, busy = gaps_and_busy(tr.t, a.service_s)
    print(f"{tr.name}: {n} requests over {tr.duration_s / 3600:.0f} h; busy {busy / n:.3f} GPU-s/query; "
          f"{(gaps > 60).sum()} gaps > 60 s, {(gaps > 3600).sum()} > 1 h")
    for load in a.loads:
        print(f"\nload {load:g} s")
        print(f"  clairvoyant (SLO 1.0): {(busy + np.minimum(gaps, load).sum() + load) / n:.2f} GPU-s/query")
        for tau in (60, 300, 600, 1800, 3600, 7200):
            cold = int((gaps > tau).sum())
            cost = busy + np.minimum(gaps, tau).sum() + cold * load
            print(f"  tau {tau:5d} s: {cold:4d} cold starts, {cost / n:6.2f} GPU-s/query")
        longest = np.sort(gaps)[::-1]
        for k in (10, 20, 40):
            cost = busy + longest[k:].sum() + k * load
            print(f"  hindsight, cold only on the {k} longest gaps: {cost / n:.2f} GPU-s/query")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
