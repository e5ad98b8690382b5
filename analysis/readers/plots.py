"""Figures at paper size (seaborn on the Agg backend); every figure is written as PNG and SVG.

Each ``*_figure`` function returns the matrix (a DataFrame) it drew, so tests can check that
a figure shows exactly the numbers computed elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.readers.average import Frequencies

PAPER_WIDTH = 6.75  # inches: a two-column paper's text width
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]  # Okabe-Ito, colour-blind safe
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", ":"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="white", font_scale=0.9)
    matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: editable in a paper, searchable
    return plt, sns


def save(fig: object, out_dir: Path, name: str) -> list[Path]:
    plt, _ = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight")  # type: ignore[attr-defined]
    fig.savefig(paths[1], bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return paths


def connectivity_matrix(freq: Frequencies) -> pd.DataFrame:
    """Destination layer rows (2..K), origin layer columns (1..K-1); entries above the diagonal are NaN."""
    K = freq.layers
    mat = np.full((K - 1, K - 1), np.nan)
    for k in range(2, K + 1):
        mat[k - 2, : k - 1] = freq.conn[k - 1, : k - 1]
    return pd.DataFrame(mat, index=pd.Index(range(2, K + 1), name="layer"), columns=pd.Index(range(1, K), name="origin"))


def _say_empty(ax: Any, text: str) -> None:
    """A figure with nothing to show says so across its axes (instead of a grid of zeros)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.6"})  # fmt: skip


def connectivity_figure(
    freq: Frequencies,
    out_dir: Path,
    name: str,
    title: str,
    diverging: bool = False,
    cbar_label: str = "share of the top-k with this connection",
    empty: str = "no extra connection in the top-k:\nevery layer reads x(k-1) alone",
) -> pd.DataFrame:
    """Heatmap of connection frequencies (or differences); the immediate predecessor shows as 1; cells that
    cannot exist (origin >= destination) are blank. Where every decision cell is 0 the figure says ``empty`` instead."""
    plt, sns = _plt()
    mat = connectivity_matrix(freq)
    K = freq.layers
    size = min(PAPER_WIDTH, 0.38 * K + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    kw = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1, "center": 0} if diverging else {"cmap": "Blues", "vmin": 0, "vmax": 1}
    always = np.zeros(mat.shape, dtype=bool)  # the immediate predecessor x(k-1): read by every layer, not a decision
    always[np.arange(K - 1), np.arange(K - 1)] = True
    decisions = mat.to_numpy()[~(mat.isna().to_numpy() | always)]
    blank = not np.any(decisions)
    sns.heatmap(mat, ax=ax, annot=K <= 16 and not blank, fmt=".2f", annot_kws={"size": 5 if K > 10 else 7}, square=True, linewidths=0.3,
                cbar_kws={"shrink": 0.7, "label": cbar_label}, mask=mat.isna().to_numpy() | always, **kw)  # fmt: skip
    for d in range(K - 1):  # the masked diagonal, marked rather than coloured: it would take the dark end of the scale
        ax.text(d + 0.5, d + 0.5, "·", ha="center", va="center", fontsize=12, color="0.35")
    if blank:
        _say_empty(ax, empty)
    ax.set_title(title + "\n(·: x(k-1), always read)", fontsize=8)
    ax.set_xlabel("origin layer i (reads x(i))")
    ax.set_ylabel("destination layer k")
    save(fig, out_dir, name)
    return mat


def lag_matrix(freq: Frequencies) -> pd.DataFrame:
    """Layer rows (1..K), lag columns (1..J); a lag j that does not exist at layer k (k - 1 - j < 0) is NaN."""
    J = freq.lags.shape[1]
    mat = freq.lags.astype(float).copy()
    for k in range(1, freq.layers + 1):
        mat[k - 1, [j - 1 for j in range(1, J + 1) if k - 1 - j < 0]] = np.nan
    return pd.DataFrame(mat, index=pd.Index(range(1, freq.layers + 1), name="layer"), columns=pd.Index(range(1, J + 1), name="lag"))


def lag_figure(
    freq: Frequencies, out_dir: Path, name: str, title: str, cbar_label: str = "share of the top-k with this lag open",
    empty: str = "no open lag in the top-k:\nx(k) = u(k) at every layer",
) -> pd.DataFrame:  # fmt: skip
    """Heatmap of LM-lag frequencies; where every lag is 0 the figure says ``empty`` instead."""
    plt, sns = _plt()
    J = freq.lags.shape[1]
    mat = lag_matrix(freq)
    blank = not np.any(np.nan_to_num(mat.to_numpy()))
    fig, ax = plt.subplots(figsize=(2.2 + 0.6 * J, 0.3 * freq.layers + 1))
    sns.heatmap(mat, ax=ax, annot=not blank, fmt=".2f", cmap="Greens", vmin=0, vmax=1, linewidths=0.3, annot_kws={"size": 7}, mask=mat.isna(),
                cbar_kws={"label": cbar_label})  # fmt: skip
    if blank:
        _say_empty(ax, empty)
    ax.set_title(title, fontsize=8)
    save(fig, out_dir, name)
    return mat


def neuron_figure(freq: Frequencies, out_dir: Path, name: str, title: str, ylabel: str = "share of the top-k") -> pd.DataFrame:
    plt, _ = _plt()
    mat = pd.DataFrame(freq.neurons, index=pd.Index(range(1, freq.layers + 1), name="layer"), columns=list(freq.neuron_names))
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH * 0.6, 2.2))
    mat.plot.bar(stacked=True, ax=ax, width=0.85, colormap="Set2")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=8)
    ax.legend(ncol=len(mat.columns), fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    save(fig, out_dir, name)
    return mat


def curves_figure(curves: Mapping[str, Sequence[float]], out_dir: Path, name: str, title: str, ylabel: str) -> pd.DataFrame:
    """NMSE versus layer, one line per network (the HNO paper's Figure 3 form)."""
    plt, _ = _plt()
    df = pd.DataFrame({k: pd.Series(list(v), index=range(1, len(v) + 1)) for k, v in curves.items()})
    df.index.name = "layer"
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH * 0.55, 2.6))
    for i, col in enumerate(df.columns):  # a qualitative palette and a marker per line: distinguishable in print too
        ax.plot(df.index, df[col], marker=MARKERS[i % len(MARKERS)], markersize=3, linewidth=1.1, label=col, color=PALETTE[i % len(PALETTE)])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole
    ax.set_xlabel("layer k")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, frameon=False)
    save(fig, out_dir, name)
    return df


def spread(values: Sequence[float], gap: float) -> list[float]:
    """Label heights for marks at ``values`` (same order), neighbours at least ``gap`` apart: labels that would
    overlap form a group centred on the mean of its marks; groups that then overlap merge, until none do."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    groups = [[i] for i in order]  # each group: indices, lowest first; its labels sit gap apart around its marks' mean

    def bottom(g: list[int]) -> float:
        return sum(values[i] for i in g) / len(g) - gap * (len(g) - 1) / 2

    merged = True
    while merged:
        merged = False
        for k in range(len(groups) - 1):
            if bottom(groups[k + 1]) < bottom(groups[k]) + gap * len(groups[k]) - 1e-12:
                groups[k : k + 2] = [groups[k] + groups[k + 1]]
                merged = True
                break
    placed = [0.0] * len(values)
    for g in groups:
        for n, i in enumerate(g):
            placed[i] = bottom(g) + n * gap
    return placed


def best_so_far_figure(
    series: Mapping[str, Sequence[float]], out_dir: Path, name: str, hand: Mapping[str, Mapping[str, float]] | None = None,
    xlabel: str = "candidates trained",
) -> pd.DataFrame:  # fmt: skip
    """Best validation nmse_db so far, one step line per curve; ``hand`` (per run: hand design -> its value) draws each
    run's best hand design as a dashed reference line and marks every hand design at the right edge."""
    plt, _ = _plt()
    df = pd.DataFrame({k: pd.Series(list(v), index=range(1, len(v) + 1)) for k, v in series.items()})
    df.index.name = xlabel
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH * 0.62, 2.8))
    for i, col in enumerate(df.columns):
        style = LINESTYLES[i // len(PALETTE) % len(LINESTYLES)]
        xs, ys = list(df.index) + [len(df) + 1], list(df[col]) + [df[col].iloc[-1]]  # the last value held for a step
        ax.step(xs, ys, where="post", label=col, linewidth=1.2, color=PALETTE[i % len(PALETTE)], linestyle=style)
    right = max(len(df), 1) + 1.2
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    labels: dict[tuple[str, float], float] = {}  # (design, value rounded): value; runs that share their hand designs are labelled once
    for j, (run, values) in enumerate((hand or {}).items()):
        if not values:
            continue
        best = min(values, key=lambda k: values[k])
        of = f" ({run})" if run else ""
        ax.axhline(values[best], color="0.25", linestyle=(0, (4, 2 + j)), linewidth=0.9, label=f"best hand design{of}: {best} {values[best]:.2f}")
        for design, value in values.items():
            ax.plot([right], [value], marker="_", markersize=9, color="0.25", clip_on=False)
            labels.setdefault((design, round(value, 2)), value)
    low, high = ax.get_ylim()
    placed = spread([v for v in labels.values()], gap=0.05 * (high - low))  # close values: labels apart, each tied to its mark
    from matplotlib.transforms import offset_copy

    beside = offset_copy(ax.transData, fig=fig, x=16, units="points")  # just right of the marks, whatever the x range
    for (design, _), y in zip(labels, placed, strict=True):
        ax.text(right, y, design, transform=beside, fontsize=5.5, va="center", clip_on=False)
    ax.set_ylim(low, high)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best validation nmse_db so far (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, frameon=False, loc="best")
    save(fig, out_dir, name)
    return df


def scatter_figure(
    df: pd.DataFrame, x: str, y: str, hue: str | None, out_dir: Path, name: str, title: str, labels: Mapping[str, str] | None = None
) -> Any:
    """``labels`` names the axes (column -> human label); a column without one is its own label. Returns the axes
    (their figure is saved and closed), the legend beside them."""
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH * 0.55, 2.6))
    sns.scatterplot(data=df, x=x, y=y, hue=hue, style=hue, ax=ax, s=14, linewidth=0, legend=hue is not None)
    if hue is not None:  # beside the axes, never over a point
        ax.legend(fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel((labels or {}).get(x, x))
    ax.set_ylabel((labels or {}).get(y, y))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    save(fig, out_dir, name)
    return ax


def frontier_figure(df: pd.DataFrame, out_dir: Path, name: str, reference: str) -> pd.DataFrame:
    """Each protocol's agreement with ``reference`` against its cost: Spearman (left; hollow: over the networks the
    reference trains without divergence, where given as ``spearman_ok``) and the median |value - reference value| in dB
    (right), against the training saved (reference iterations / the protocol's, log scale); one marker per protocol."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    plt, _ = _plt()
    cols = ["cost_ratio", "spearman", "median_abs_delta_db"] + (["spearman_ok"] if "spearman_ok" in df.columns else [])
    data = df.set_index("protocol")[cols]
    fig, axes = plt.subplots(1, 2, figsize=(PAPER_WIDTH, 2.7))
    for ax, col, label in (
        (axes[0], "spearman", f"Spearman against {reference}"),
        (axes[1], "median_abs_delta_db", f"median |value − {reference}| (dB)"),
    ):
        for i, (proto, r) in enumerate(data.iterrows()):
            colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
            ax.scatter(r["cost_ratio"], r[col], color=colour, marker=marker, s=24, label=str(proto), zorder=3)
            if col == "spearman" and "spearman_ok" in data.columns and r["spearman_ok"] == r["spearman_ok"]:
                ax.scatter(r["cost_ratio"], r["spearman_ok"], facecolors="none", edgecolors=colour, marker=marker, s=24, zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([20, 30, 50, 100, 150]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"× less training than {reference}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    if "spearman_ok" in data.columns:
        axes[0].set_title(f"filled: all networks; hollow: where {reference} does not diverge", fontsize=7)
    axes[1].legend(fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save(fig, out_dir, name)
    return data
