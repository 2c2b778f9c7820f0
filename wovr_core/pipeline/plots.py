"""Small matplotlib figures rendered to inline base64 PNG (no pyplot: no global state, no display)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from wovr_core.errors import DependencyError

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def _figure(width: float = 7.0, height: float = 3.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise DependencyError(f"wovr report draws its plots with matplotlib, which is not installed ({e}); "
                              "pip install matplotlib") from None
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _encode(figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float | None]]], *, xlabel: str, ylabel: str,
              xticks: Sequence[str] | None = None, ylim: tuple[float, float] | None = None,
              errors: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
              markers: dict[str, Sequence[int]] | None = None) -> str:
    """Lines ``name -> (x, y)`` (None values are gaps); ``errors``: name -> (low, high) bands; ``markers``:
    name -> x positions to circle (e.g. promotions). Returns base64 PNG."""
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    for k, (name, (x, y)) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        points = [(a, b) for a, b in zip(x, y, strict=True) if b is not None]
        if not points:
            continue
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, color=color, label=name)
        if errors and name in errors:
            low, high = errors[name]
            axes.fill_between(list(x), list(low), list(high), color=color, alpha=0.15, linewidth=0)
        if markers and name in markers:
            marked = [(a, b) for a, b in points if a in set(markers[name])]
            axes.scatter([p[0] for p in marked], [p[1] for p in marked], s=90, facecolors="none",
                         edgecolors="black", zorder=5, label="promoted")
    if xticks is not None:
        axes.set_xticks(range(len(xticks)))
        axes.set_xticklabels(xticks, rotation=30, ha="right", fontsize=7)
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if series:
        axes.legend(fontsize=7, loc="best")
    return _encode(figure)


def bar_line_plot(labels: Sequence[str], bars: Sequence[float], line: Sequence[float], *, bar_label: str,
                  line_label: str, ylabel: str) -> str:
    """Bars (e.g. new episodes per run) with a line on the same axis (e.g. the cumulative total)."""
    figure = _figure()
    axes = figure.add_subplot(1, 1, 1)
    x = list(range(len(labels)))
    axes.bar(x, list(bars), color=COLORS[0], alpha=0.6, label=bar_label)
    axes.plot(x, list(line), color=COLORS[1], marker="o", ms=3, label=line_label)
    axes.set_xticks(x)
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(fontsize=7, loc="upper left")
    return _encode(figure)
