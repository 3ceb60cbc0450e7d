"""The figures of ``tagteller evaluate`` and ``tagteller report``, as PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas; pyplot is
never imported, so no interactive backend or global figure state is involved and the functions are
safe in a server or a training loop. Only :mod:`tagteller.evaluate.report` imports this module,
inside the two commands; ``tagteller scan`` never does.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tagteller.evaluate.metrics import CalibrationBin

DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _annotate_cells(ax: Any, values: np.ndarray, text: list[list[str]], threshold: float) -> None:
    n = values.shape[0]
    size = max(5.0, min(10.0, 120.0 / max(n, 1)))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if text[i][j]:
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=size,
                        color="white" if values[i, j] > threshold else "black")


def plot_confusion(cm: np.ndarray, labels: Sequence[str], title: str = "") -> bytes:
    """Counts (left) and row-normalised recall per cell (right); rows are the true labels."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(labels)
    support = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, support, out=np.zeros(cm.shape, dtype=np.float64), where=support > 0)
    side = max(4.0, 0.55 * n + 2.0)
    fig = Figure(figsize=(2 * side + 1.5, side + 1.0), layout="constrained")
    axes = fig.subplots(1, 2)
    annotate = n <= 30
    tick_size = max(5.0, min(10.0, 160.0 / max(n, 1)))
    panels = (
        (axes[0], cm, "counts", "Blues", [[str(v) if v else "" for v in row] for row in cm], None),
        (axes[1], normalised, "row-normalised (recall)", "Oranges",
         [[f"{v:.0%}" if c else "" for v, c in zip(row, crow)] for row, crow in zip(normalised, cm)], (0.0, 1.0)),
    )
    for ax, values, name, cmap, text, limits in panels:
        vmin, vmax = limits if limits else (0, max(int(values.max()), 1))
        im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=tick_size)
        ax.set_yticks(range(n), labels, fontsize=tick_size)
        if annotate:
            _annotate_cells(ax, values, text, threshold=0.6 * vmax)
    if title:
        fig.suptitle(title)
    return _png(fig)


@dataclass(frozen=True)
class ErrorTile:
    """One mistake in the gallery: the photo (None: it could not be shown) and its caption."""

    image: np.ndarray | None
    key: str
    true: str
    predicted: str
    confidence: float
    true_probability: float


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def plot_errors(tiles: Sequence[ErrorTile], title: str = "", columns: int = 4) -> bytes:
    """A grid of the worst mistakes, most confident first: photo, true label, prediction."""
    if not tiles:
        fig = Figure(figsize=(6, 2.5))
        fig.text(0.5, 0.55, "no mistakes", ha="center", va="center", fontsize=20, color="darkgreen")
        if title:
            fig.text(0.5, 0.2, title, ha="center", va="center", fontsize=11)
        return _png(fig)
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    # At least three tiles wide, so the title of a one- or two-mistake gallery is not cut off.
    fig = Figure(figsize=(3.1 * max(columns, 3), 3.5 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, tile in zip(axes, tiles):
        if tile.image is not None:
            cmap = "gray" if tile.image.ndim == 2 else None
            small = max(tile.image.shape[:2]) < 96  # e.g. 28x28 Fashion-MNIST: show the pixels
            ax.imshow(tile.image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest" if small else "bilinear")
        else:
            ax.text(0.5, 0.5, "(cannot show)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(
            f"{_short(tile.key, 34)}\n"
            f"true: {_short(tile.true, 22)} ({tile.true_probability:.0%})\n"
            f"pred: {_short(tile.predicted, 22)} ({tile.confidence:.0%})",
            fontsize=9, loc="left", color="firebrick",
        )
    if title:
        fig.suptitle(title)
    return _png(fig)


def plot_reliability(bins: Sequence[CalibrationBin], ece: float, title: str = "") -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal, and bin counts."""
    fig = Figure(figsize=(6.0, 7.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lowers = np.array([b.lower for b in bins])
    widths = np.array([b.upper - b.lower for b in bins])
    filled = [b for b in bins if b.count]
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if filled:
        top.bar([b.lower for b in filled], [b.accuracy for b in filled], width=[b.upper - b.lower for b in filled],
                align="edge", color="steelblue", edgecolor="navy", label="accuracy")
        gaps = [b.confidence - b.accuracy for b in filled if b.confidence is not None and b.accuracy is not None]
        top.bar([b.lower for b in filled], gaps, bottom=[b.accuracy for b in filled],
                width=[b.upper - b.lower for b in filled], align="edge", color="salmon", alpha=0.5,
                hatch="//", edgecolor="firebrick", label="gap to mean confidence")
        top.plot([b.confidence for b in filled], [b.accuracy for b in filled], "o", color="black",
                 markersize=4, label="(mean confidence, accuracy)")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"{title + ': ' if title else ''}reliability (ECE = {ece:.3f})")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(lowers, [b.count for b in bins], width=widths, align="edge", color="grey", edgecolor="black")
    bottom.set_xlabel("top-1 confidence")
    bottom.set_ylabel("images")
    return _png(fig)


def _values(epochs: Sequence[dict], key: str) -> np.ndarray:
    out = []
    for e in epochs:
        v = e.get(key)
        out.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan)
    return np.array(out, dtype=np.float64)


def plot_training_curves(history: dict[str, Any]) -> bytes:
    """Loss, accuracy and learning rate per epoch; phases shaded and named; the stopping
    policy's decisions drawn as numbered lines, explained under the plot; best epoch starred."""
    epochs = history["epochs"]
    x = np.array([int(e["epoch"]) for e in epochs])
    phases = history.get("phases") or []
    decisions = history.get("decisions") or []
    notes = [
        f"[{i}] epoch {d.get('epoch')}: {d.get('action')} by {d.get('by', 'policy')}: {d.get('reason', '')}"
        for i, d in enumerate(decisions, start=1)
    ]
    wrapped = [line for note in notes for line in textwrap.wrap(note, 110, subsequent_indent="      ")]
    has_lr = bool(np.isfinite(_values(epochs, "lr")).any())
    panels = 3 if has_lr else 2
    height = 2.6 * panels + 0.9 + 0.18 * len(wrapped)
    fig = Figure(figsize=(10.0, height), layout="constrained")
    if wrapped:
        # matplotlib annotates subfigures() as one SubFigure or an array; two rows are an array
        top_fig, notes_fig = fig.subfigures(2, 1, height_ratios=[2.6 * panels + 0.9, 0.18 * len(wrapped) + 0.1])  # type: ignore[misc]
    else:
        top_fig, notes_fig = fig, None
    axes = top_fig.subplots(panels, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.5][:panels]})
    loss_ax, acc_ax = axes[0], axes[1]

    loss_ax.plot(x, _values(epochs, "loss"), "o-", color="tab:blue", markersize=3, label="train loss")
    loss_ax.plot(x, _values(epochs, "val_loss"), "o-", color="tab:orange", markersize=3, label="val loss")
    loss_ax.set_ylabel("loss")
    acc_ax.plot(x, _values(epochs, "accuracy"), "o-", color="tab:blue", markersize=3, label="train accuracy")
    acc_ax.plot(x, _values(epochs, "val_accuracy"), "o-", color="tab:orange", markersize=3, label="val accuracy")
    acc_ax.set_ylabel("accuracy")
    target = (history.get("stopping") or {}).get("target_accuracy")
    if isinstance(target, (int, float)):
        acc_ax.axhline(target, color="green", linestyle=":", linewidth=1, label=f"target {target:.2f}")
    best = history.get("best") or {}
    if isinstance(best.get("epoch"), int) and isinstance(best.get("val_accuracy"), (int, float)):
        acc_ax.plot([best["epoch"]], [best["val_accuracy"]], "*", color="gold", markeredgecolor="black",
                    markersize=15, label=f"best: epoch {best['epoch']} ({best['val_accuracy']:.3f})", zorder=5)
    if has_lr:
        axes[2].plot(x, _values(epochs, "lr"), ".-", color="tab:purple")
        axes[2].set_yscale("log")
        axes[2].set_ylabel("learning rate")
    axes[-1].set_xlabel("epoch")

    last_epoch = int(x.max()) if len(x) else 1
    starts = [(int(p.get("first_epoch", 1)), p) for p in phases]
    starts.sort(key=lambda item: item[0])
    for i, (first, phase) in enumerate(starts):
        end = starts[i + 1][0] - 1 if i + 1 < len(starts) else last_epoch
        for ax in axes:
            ax.axvspan(first - 0.5, end + 0.5, color="#e6e6e6" if i % 2 == 0 else "#f6f6f6", zorder=0)
        loss_ax.text((first + end) / 2, 1.0, f"{phase.get('name', i)}\nlr {phase.get('learning_rate', '?')}, "
                     f"unfreeze {phase.get('unfreeze', '?')}", transform=loss_ax.get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=8)
    for i, decision in enumerate(decisions, start=1):
        epoch = decision.get("epoch")
        if not isinstance(epoch, (int, float)):
            continue
        colour = {"stop": "red", "next_phase": "darkorange"}.get(decision.get("action"), "green")
        for ax in axes:
            ax.axvline(epoch, color=colour, linestyle="--", linewidth=1.2)
        acc_ax.annotate(f"[{i}] {decision.get('action')}", xy=(epoch, 0.02), xycoords=acc_ax.get_xaxis_transform(),
                        rotation=90, ha="right", va="bottom", fontsize=8, color=colour)
    for ax in (loss_ax, acc_ax):
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    title = f"{history.get('domain', '')} run {history.get('run_id', '')} ({history.get('status', '?')})"
    top_fig.suptitle(title.strip())
    if notes_fig is not None:
        notes_fig.text(0.01, 0.98, "\n".join(wrapped), ha="left", va="top", fontsize=8, family="monospace")
    return _png(fig)
