"""Draw docs/architecture.png: PickSpin on Knative + KEDA (boxes and arrows, matplotlib only).

    .venv/bin/python docs/make_architecture.py            # writes docs/architecture.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent / "architecture.png"

# colours per role
C_CLIENT = "#e8eef7"
C_ROUTER = "#d6ecd2"
C_KSVC = "#fdebd0"
C_KEDA = "#e5dbf3"
C_PROM = "#fadbd8"
C_HELM = "#eaeaea"


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, title: str, body: str = "", color: str = "#fff",
        title_size: float = 11) -> tuple[float, float, float, float]:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                linewidth=1.3, edgecolor="#333", facecolor=color))
    ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=title_size, fontweight="bold")
    if body:
        ax.text(x + w / 2, y + h - 0.62, body, ha="center", va="top", fontsize=8.6, linespacing=1.35)
    return x, y, w, h


def arrow(ax: plt.Axes, a: tuple[float, float], b: tuple[float, float], label: str = "", *, style: str = "-|>",
          color: str = "#222", dashed: bool = False, rad: float = 0.0, label_dy: float = 0.12) -> None:
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=14, linewidth=1.4, color=color,
                                 linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}"))
    if label:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + label_dy, label, ha="center", va="bottom", fontsize=8.2,
                color=color, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})


def draw(out: Path = OUT) -> Path:
    fig, ax = plt.subplots(figsize=(15, 9.2), dpi=130)
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 9.2)
    ax.axis("off")
    ax.text(7.5, 9.0, "PickSpin on Kubernetes: Pick (router) and Spin (KEDA external scaler)", ha="center",
            va="top", fontsize=15, fontweight="bold")

    # cluster frame
    ax.add_patch(FancyBboxPatch((2.55, 0.35), 12.25, 8.05, boxstyle="round,pad=0.02,rounding_size=0.2",
                                linewidth=1, edgecolor="#888", facecolor="none", linestyle=(0, (4, 3))))
    ax.text(2.75, 8.28, "Kubernetes cluster  (Knative Serving + Kourier, autoscaler-keda, KEDA, Prometheus)",
            fontsize=9, color="#555", va="top")

    box(ax, 0.2, 4.3, 2.0, 1.5, "Client", "OpenAI API\n/v1/chat/completions", C_CLIENT)
    box(ax, 0.2, 0.6, 2.0, 2.3, "Helm", "helm install pickspin\nhelm/pickspin\n(values: one entry\nper model)", C_HELM)

    box(ax, 3.0, 3.6, 3.6, 3.6, "Router  (Knative Service, KPA)",
        "min-scale 1, $PORT, /readyz\n1. classify prompt complexity\n   keyword | scorer (semantic)\n"
        "2. score (model, backend):\n   w_R R + w_T T + w_C C, wait budget\n   (downgrade + wake if cold)\n"
        "3. proxy + stream, failover,\n   circuit breaker per backend\n/metrics  pickspin_*", C_ROUTER)
    box(ax, 3.3, 0.7, 3.0, 1.9, "Scorer  (Knative Service, KPA)", "MiniLM classifier, onnxruntime\n"
        "POST /v1/classify\nscale to zero allowed", C_KSVC)

    # backends
    box(ax, 8.0, 5.2, 3.1, 2.7, "Model backends", "one Knative Service per model\ncluster-local, port 8000, /health\n"
        "containerConcurrency = c\nclass hpa.autoscaling.knative.dev\nmin-scale 0, max-scale\n"
        "scaled-object-override", C_KSVC)
    for i, (name, sub) in enumerate([("vLLM 8B", "GPU, PVC"), ("vLLM 70B", "4 GPU, PVC"), ("llama.cpp", "CPU (kind)")]):
        box(ax, 11.5, 7.0 - i * 0.95, 2.9, 0.8, name, sub, "#fff6e5", title_size=9.5)
    ax.text(12.95, 4.05, "... scaled 0..N", ha="center", fontsize=8.5, color="#555")
    box(ax, 8.9, 3.55, 2.3, 1.0, "Knative activator", "buffers requests while\na backend is at zero", "#fff6e5",
        title_size=9.5)

    box(ax, 7.3, 0.6, 2.6, 2.2, "KEDA", "operator + metrics server\nScaledObject per revision\n"
        "(from autoscaler-keda)\nexternal-push trigger\nfallback, initialCooldown", C_KEDA)
    box(ax, 10.3, 0.6, 2.1, 2.2, "PickSpin scaler", "gRPC :6000\nIsActive / StreamIsActive\nGetMetrics:\n"
        "max(r*lat, floor*c,\n    demand now)", C_KEDA)
    box(ax, 12.7, 0.6, 1.9, 2.2, "Prometheus", "scrapes router\n/metrics (5 s)\nrate, latency,\nin-flight", C_PROM)

    # flows
    arrow(ax, (2.2, 5.05), (3.0, 5.05), "request")
    arrow(ax, (4.8, 3.6), (4.8, 2.6), "classify", label_dy=0.0)
    arrow(ax, (6.6, 6.4), (8.0, 6.4), "proxy to the\nchosen backend")
    arrow(ax, (6.6, 4.55), (8.9, 4.2), "request to a backend at zero", dashed=True, label_dy=0.2)
    arrow(ax, (10.05, 4.55), (10.05, 5.2), "", dashed=True)
    arrow(ax, (11.1, 6.5), (11.5, 6.5), "")
    arrow(ax, (6.6, 3.75), (13.4, 2.8), "", color="#b03a2e")
    ax.text(12.3, 3.2, "pickspin_* metrics\n(scraped)", ha="center", fontsize=8.2, color="#b03a2e")
    arrow(ax, (12.7, 1.5), (12.4, 1.5), "", color="#b03a2e")
    ax.text(12.55, 1.05, "PromQL", ha="center", fontsize=8, color="#b03a2e")
    arrow(ax, (6.1, 3.6), (10.6, 2.8), "", color="#1f618d", dashed=True)
    ax.text(9.75, 3.12, "demand push\n(cold model)", ha="center", fontsize=8.2, color="#1f618d")
    arrow(ax, (9.9, 1.9), (10.3, 1.9), "", style="<|-|>", color="#5b2c6f")
    ax.text(10.1, 2.05, "gRPC", ha="center", fontsize=8, color="#5b2c6f")
    arrow(ax, (7.9, 2.8), (8.45, 5.2), "", color="#5b2c6f")
    ax.text(7.55, 3.05, "scales the revision's\nDeployment 0..N", ha="center", fontsize=8.2, color="#5b2c6f")
    arrow(ax, (2.2, 2.3), (2.55, 2.3), "", color="#555")
    ax.text(2.45, 2.45, "installs\nall objects", ha="center", fontsize=7.8, color="#555")
    ax.text(1.2, 0.42, "also: ConfigMap (service matrix),\nscaler Deployment, helm tests", ha="center", fontsize=7.8,
            color="#555", va="top")

    ax.text(0.2, 3.7, "Pick: which (model, backend)\nSpin: how many replicas,\nscale to zero after idle tau",
            fontsize=9, color="#333", va="top")
    fig.savefig(out, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
