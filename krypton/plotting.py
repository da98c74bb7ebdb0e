"""Plots the course reuses: the GFLOPS ladder, GFLOPS against size, and the roofline.

Every plot has a title, axes with units, a legend, and the machine it was measured on in a
caption, so a figure copied out of context still says what it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from krypton import machine
from krypton.files import atomic_write
from krypton.kernels import KERNELS
from krypton.timing import REFERENCES, Measurement

COLORS = {
    "naive": "#9e9e9e", "tiled": "#8d6e63", "simd": "#42a5f5", "regblock": "#26a69a",
    "packed": "#7e57c2", "parallel": "#d81b60", "small": "#5c6bc0", "numpy": "#ff8f00",
    "torch": "#2e7d32",
}
"""One colour per contender, the same in every notebook and plot."""


def _pyplot():
    import matplotlib.pyplot as plt  # without a display, matplotlib falls back to Agg itself

    return plt


def caption(fig, text: str | None = None) -> None:
    """Put the machine (or ``text``) under a figure, small and grey."""
    fig.text(0.01, 0.005, text or f"Measured on: {machine.describe()}", fontsize=7,
             color="#555555", ha="left", va="bottom")


def _finish(ax, own: bool):
    # A figure this module made gets the machine caption; one the caller passed in is theirs.
    if own:
        caption(ax.figure)
        ax.figure.tight_layout(rect=(0, 0.03, 1, 1))
    return ax.figure


def label_of(x: Measurement) -> str:
    return f"{x.kernel} ({x.threads} thr)" if x.threads > 1 else x.kernel


def plot_ladder(measurements: Sequence[Measurement], shape: tuple | None = None,
                peak: Mapping[int, float] | None = None, ax=None, title: str | None = None):
    """Bar chart: GFLOPS of each contender at one (M, N, K) shape, with peak lines (a shape
    measured in several layouts: the plain one, or the one ``shape``'s fourth entry names)."""
    plt = _pyplot()
    if shape is None:
        shape = max({(x.m, x.n, x.k) for x in measurements}, key=lambda s: s[0] * s[1] * s[2])
    layouts = {x.layout for x in measurements if (x.m, x.n, x.k) == tuple(shape[:3])}
    layout = shape[3] if len(shape) > 3 else "nn" if "nn" in layouts else min(layouts, default="nn")
    shape = tuple(shape[:3])
    rows = [x for x in measurements if (x.m, x.n, x.k) == shape and x.layout == layout]
    order = {name: i for i, name in enumerate(KERNELS + REFERENCES)}
    rows.sort(key=lambda x: (x.threads, order.get(x.kernel, 99)))
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8, 4.2))
    labels = [label_of(x) for x in rows]
    values = [x.gflops for x in rows]
    bars = ax.bar(labels, values, color=[COLORS.get(x.kernel, "#607d8b") for x in rows])
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value),
                    ha="center", va="bottom", fontsize=8)
    for threads, gflops in (peak or {}).items():
        ax.axhline(gflops, ls="--", lw=1, color="#444444")
        ax.annotate(f"FMA peak, {threads} thread{'s' * (threads > 1)}: {gflops:.0f}",
                    (0, gflops), xytext=(2, 2), textcoords="offset points", fontsize=8)
    m, n, k = shape
    views = {"nt": " (B a transposed view)", "tn": " (A a transposed view)",
             "tt": " (A and B transposed views)"}.get(layout, "")
    ax.set_title(title or f"The ladder: C = A·B with M={m}, K={k}, N={n}{views} (float32)")
    ax.set_ylabel("GFLOPS (higher is better)")
    ax.set_xlabel("kernel (threads)")
    ax.tick_params(axis="x", rotation=20)
    return _finish(ax, own)


def plot_gflops_vs_size(measurements: Sequence[Measurement], ax=None, title: str | None = None,
                        logy: bool = True):
    """Lines: GFLOPS against matrix size for each contender (square shapes of plain
    operands only)."""
    plt = _pyplot()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(8, 4.2))
    series: dict[str, list] = {}
    for x in measurements:
        if x.m == x.n == x.k and x.layout == "nn":
            series.setdefault(label_of(x), []).append((x.m, x.gflops, x.kernel))
    for label, points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label,
                color=COLORS.get(points[0][2]), ls="--" if "thr" in label else "-")
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("matrix size N (M = K = N)")
    ax.set_ylabel("GFLOPS")
    ax.set_title(title or "GFLOPS against matrix size")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    return _finish(ax, own)


def plot_roofline(peak_gflops: float, bandwidth_gbs: float,
                  points: Mapping[str, tuple[float, float]] | None = None, ax=None,
                  title: str | None = None):
    """The roofline: attainable GFLOPS = min(peak, bandwidth x arithmetic intensity).

    Args:
        peak_gflops: the compute roof (measured FMA peak).
        bandwidth_gbs: the memory roof's slope (measured triad bandwidth).
        points: label -> (arithmetic intensity in FLOP/byte, measured GFLOPS).
    """
    plt = _pyplot()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
    intensity = np.logspace(-2, 3, 200)
    ax.plot(intensity, np.minimum(peak_gflops, bandwidth_gbs * intensity), color="black", lw=2,
            label=f"roof: {peak_gflops:.0f} GFLOPS, {bandwidth_gbs:.0f} GB/s")
    ridge = peak_gflops / bandwidth_gbs
    ax.axvline(ridge, color="#888888", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.1f} FLOP/B", (ridge, peak_gflops / 30), rotation=90,
                fontsize=8, ha="right")
    for label, (ai, value) in (points or {}).items():
        kernel = label.split()[0]
        ax.scatter([ai], [value], s=40, zorder=3, color=COLORS.get(kernel), label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte of memory traffic)")
    ax.set_ylabel("GFLOPS")
    ax.set_title(title or "Roofline of this machine")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    return _finish(ax, own)


def save_benchmark_plots(measurements: Sequence[Measurement], peak: Mapping[int, float],
                         out_dir: Path | str) -> dict[str, Path]:
    """Save the ladder bar chart and the GFLOPS-vs-size plot as PNGs; return their paths."""
    plt = _pyplot()
    out = Path(out_dir)
    paths = {}
    figures = {"ladder": ("ladder.png", plot_ladder(measurements, peak=peak))}
    if len({x.m for x in measurements if x.m == x.n == x.k and x.layout == "nn"}) > 1:
        figures["sizes"] = ("gflops_vs_size.png", plot_gflops_vs_size(measurements))
    for key, (name, fig) in figures.items():
        paths[key] = out / name
        with atomic_write(paths[key]) as file:  # a failed save keeps the old picture
            fig.savefig(file, format="png", dpi=110)
        plt.close(fig)
    return paths
