"""`tools/bench.py --plot`: time against N on log-log axes (needs matplotlib)."""

from __future__ import annotations

import statistics

# (result key, timing key, label) of each line drawn
_LINES = [
    ("jaxcheck", "first", "jaxcheck full (compile included)"),
    ("fast", "first", "jaxcheck fast"),
    ("sample", "first", "jaxcheck sample (16 per leaf)"),
    ("loop", "first", "jitted per-parameter loop"),
    ("check_grads", "first", "jax check_grads (one direction)"),
    ("torch_slow", "time", "torch gradcheck"),
    ("torch_fast", "time", "torch gradcheck fast_mode"),
]


def plot_times(results: list[dict], path: str) -> None:
    """Writes a PNG of each method's median time against the parameter count."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "`--plot` needs matplotlib: pip install 'jaxcheck[plot]'."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for key, timing, label in _LINES:
        points = [
            (r["N"], statistics.median(r[key][timing]))
            for r in results
            if key in r and timing in r[key]
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("seconds (median)")
    ax.set_title("Gradient check of a float64 tanh MLP")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
