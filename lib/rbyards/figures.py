"""Thesis figures drawn from result dicts and prediction frames.

Every function here takes the saved outputs of a run: the result JSON loaded as a dict, or the
prediction parquet loaded as a DataFrame. Each returns a matplotlib Figure, so a figure can be
redrawn without sampling a model again. `save_figure` writes a vector PDF and a 300 dpi PNG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

logger = logging.getLogger(__name__)

FULL_WIDTH = 6.3
"""Width in inches of a figure that spans the thesis text block."""

HALF_WIDTH = 3.1
"""Width in inches of a figure that takes half the text block (two side by side)."""

PNG_DPI = 300

OKABE_ITO = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#E69F00",
    "#56B4E9",
    "#CC79A7",
    "#000000",
    "#F0E442",
)
"""Okabe-Ito colour-blind safe palette, in the order the style file cycles through it."""

DEFAULT_LEVELS = (0.5, 0.68, 0.8, 0.9, 0.95)

METRIC_NAMES = {
    "crps": "CRPS",
    "mae": "MAE",
    "rmse": "RMSE",
    "width_90_mean": "Mean 90% width",
    "width_90_median": "Median 90% width",
    "pinball_05": "Pinball loss at 5%",
    "pinball_50": "Pinball loss at 50%",
    "pinball_95": "Pinball loss at 95%",
}
"""Short display names of the metric keys in result files. Coverage keys get names by rule."""

# Approximate characters of 9 pt DejaVu Serif per inch of axes width, for wrapping titles.
_TITLE_CHARS_PER_INCH = 13

_QUANTILE_COLUMN = re.compile(r"^q(\d*\.\d+)$")
_COVERAGE_METRIC = re.compile(r"^coverage_(\d+)$")
_FILE_PART = re.compile(r"[^A-Za-z0-9.+]+")
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class FigureInputError(ValueError):
    """Raised when a result dict or prediction frame lacks what a figure needs."""


class SavedFigure(NamedTuple):
    """Paths of the two files that `save_figure` writes."""

    pdf: Path
    png: Path


def style_path() -> Path:
    """Return the path of the packaged matplotlib style file ``rbyards.mplstyle``."""
    return Path(__file__).with_name("rbyards.mplstyle")


def use_thesis_style() -> None:
    """Apply the thesis style (serif font, Okabe-Ito colours, thesis sizes) globally."""
    plt.style.use(style_path())


@contextlib.contextmanager
def thesis_style() -> Iterator[None]:
    """Apply the thesis style inside a ``with`` block only, restoring rcParams afterwards."""
    with plt.style.context(style_path()):
        yield


def figure_file_stem(name: str, **params: Any) -> str:
    """Build a file name stem from a figure name and its parameters.

    Parameters
    ----------
    name : str
        Figure name, for example ``"calibration_curves"``.
    **params : Any
        Parameters that distinguish variants, in order, for example ``fs="seed"``.

    Returns
    -------
    str
        ``name`` followed by ``-key_value`` per parameter, for example
        ``"calibration_curves-fs_seed"``. Characters other than letters, digits, ``.`` and
        ``+`` in values become ``_``.

    Raises
    ------
    FigureInputError
        If ``name`` is empty or contains characters that are not safe in a file name.
    """
    if not _FIGURE_NAME.match(name):
        raise FigureInputError(
            f"figure name {name!r} is not usable as a file name: start with a letter or digit "
            "and use letters, digits, '_', '-' and '.' only"
        )
    parts = [name]
    for key, value in params.items():
        parts.append(f"{key}_{_FILE_PART.sub('_', str(value)).strip('_')}")
    return "-".join(parts)


def save_figure(fig: Figure, name: str, figures_dir: str | Path, **params: Any) -> SavedFigure:
    """Write a figure as vector PDF plus a 300 dpi PNG twin, atomically.

    Parameters
    ----------
    fig : Figure
        The figure to write.
    name : str
        Figure name, the start of both file names.
    figures_dir : str or Path
        Folder for the files, created when missing.
    **params : Any
        Parameters appended to the file name, see `figure_file_stem`.

    Returns
    -------
    SavedFigure
        Paths of the PDF and the PNG.
    """
    folder = Path(figures_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = figure_file_stem(name, **params)
    pdf_path = folder / f"{stem}.pdf"
    png_path = folder / f"{stem}.png"
    # Saving reads rcParams such as pdf.fonttype, so the style must be active here as well.
    with thesis_style():
        # An empty creation date keeps the PDF bytes identical when nothing else changed.
        _savefig_atomic(fig, pdf_path, format="pdf", metadata={"CreationDate": None})
        _savefig_atomic(fig, png_path, format="png", dpi=PNG_DPI)
    logger.info("Wrote figure %s and %s", pdf_path, png_path)
    return SavedFigure(pdf=pdf_path, png=png_path)


def _savefig_atomic(fig: Figure, path: Path, **kwargs: Any) -> None:
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    # mkstemp creates the file readable by the owner only, but output files are for everyone.
    os.chmod(temp_name, 0o644)
    try:
        fig.savefig(temp_name, **kwargs)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


# ---------------------------------------------------------------------------------------------
# Input helpers


def quantile_columns(frame: pd.DataFrame) -> dict[float, str]:
    """Map each quantile level to its column (``"q0.050"`` -> 0.05) in a prediction frame."""
    columns = {}
    for column in frame.columns:
        match = _QUANTILE_COLUMN.match(str(column))
        if match:
            columns[float(match.group(1))] = column
    return dict(sorted(columns.items()))


def _quantile(frame: pd.DataFrame, level: float, source: str) -> pd.Series:
    for found, column in quantile_columns(frame).items():
        if np.isclose(found, level, atol=1e-9):
            return frame[column].astype(float)
    raise FigureInputError(
        f"prediction frame {source!r} has no quantile column for level {level} "
        f"(expected a column like 'q{level:.3f}'); write predictions with the full quantile grid"
    )


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise FigureInputError(
            f"frame {source!r} is missing column(s) {missing}; pass a prediction frame as "
            "written by the notebooks (outputs/<profile>/predictions/<run_id>.parquet)"
        )


def _usable_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    usable = {}
    for run_id, result in results.items():
        if result.get("status", "ok") != "ok":
            logger.warning("Skipping run %s in figure: status is %r", run_id, result.get("status"))
            continue
        usable[run_id] = result
    if not usable:
        raise FigureInputError(
            f"no result with status 'ok' among runs {list(results)}; rerun the failed notebooks"
        )
    return usable


def _metric(result: Mapping[str, Any], run_id: str, key: str) -> float:
    metrics = result.get("metrics")
    if not isinstance(metrics, Mapping) or key not in metrics or metrics[key] is None:
        raise FigureInputError(
            f"result {run_id!r} has no metrics[{key!r}]; check the metric name or rerun the "
            "notebook that writes this result"
        )
    return float(metrics[key])


def _interval(result: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    intervals = result.get("metric_intervals") or {}
    bounds = intervals.get(key)
    if bounds is None:
        return None
    low, high = bounds
    return float(low), float(high)


def _label(run_id: str, labels: Mapping[str, str] | None) -> str:
    if labels and run_id in labels:
        return labels[run_id]
    return run_id


def metric_name(metric: str) -> str:
    """Return the short display name of a metric key, for example ``"90% coverage"``."""
    match = _COVERAGE_METRIC.match(metric)
    if match:
        return f"{match.group(1)}% coverage"
    return METRIC_NAMES.get(metric, metric)


def _metric_axis_label(metric: str) -> str:
    if _COVERAGE_METRIC.match(metric):
        return f"Observed {metric_name(metric)}"
    return f"{metric_name(metric)} (yards)"


def _wrap_title(title: str, axes_width: float) -> str:
    return textwrap.fill(title, width=max(20, int(axes_width * _TITLE_CHARS_PER_INCH)))


def _label_bottom_panels(axes: np.ndarray, n_panels: int, xlabel: str) -> None:
    """Put x tick labels and the x label on the lowest visible panel of each column."""
    ncols = axes.shape[1]
    for index, ax in enumerate(axes.flat[:n_panels]):
        is_bottom = index + ncols >= n_panels
        ax.tick_params(axis="x", labelbottom=is_bottom)
        ax.set_xlabel(xlabel if is_bottom else "")


def _nominal_coverage(metric: str) -> float | None:
    match = _COVERAGE_METRIC.match(metric)
    return int(match.group(1)) / 100 if match else None


def _level_key(level: float) -> str:
    return f"{round(level * 100):d}"


def _errorbar_extent(value: float, bounds: tuple[float, float] | None) -> list[float]:
    if bounds is None:
        return [0.0, 0.0]
    return [max(value - bounds[0], 0.0), max(bounds[1] - value, 0.0)]


def _grid_shape(n_panels: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(ncols, n_panels))
    return int(np.ceil(n_panels / ncols)), ncols


# ---------------------------------------------------------------------------------------------
# Figures


def plot_target_distribution(
    frame: pd.DataFrame,
    *,
    column: str = "rushing_yards",
    by: str | None = None,
    bins: int = 40,
    title: str = "Rushing yards per game",
) -> Figure:
    """Draw the histogram of the target, optionally one outline per group.

    Parameters
    ----------
    frame : pandas.DataFrame
        Modelled rows, for example ``Dataset.frame`` or a prediction frame.
    column : str
        Target column in yards.
    by : str, optional
        Column to split by (for example ``"role"``). Groups are drawn as density outlines.
    bins : int
        Approximate number of histogram bins over the whole range; whole-number targets get
        bins of integer width.
    title : str
        Axes title.

    Returns
    -------
    Figure
        Half-height full-width figure.
    """
    _require_columns(frame, [column] + ([by] if by else []), "target frame")
    values = frame[column].astype(float)
    if values.empty:
        raise FigureInputError(f"column {column!r} has no rows to plot; check the row filter")
    edges = _histogram_edges(values.dropna().to_numpy(), bins)
    with thesis_style():
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 2.6))
        if by is None:
            ax.hist(values, bins=edges, color=OKABE_ITO[0], edgecolor="white", linewidth=0.3)
            median = float(values.median())
            ax.axvline(median, color=OKABE_ITO[1], linestyle="--", linewidth=1.0)
            ax.annotate(
                f"median {median:.0f} yd",
                xy=(median, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(4, -10),
                textcoords="offset points",
                color=OKABE_ITO[1],
            )
            ylabel = "Games"
        else:
            for index, (group, rows) in enumerate(frame.groupby(by, sort=True)):
                ax.hist(
                    rows[column].astype(float),
                    bins=edges,
                    density=True,
                    histtype="step",
                    linewidth=1.2,
                    color=OKABE_ITO[index % len(OKABE_ITO)],
                    label=f"{group} (n={len(rows)})",
                )
            ax.legend()
            ylabel = "Density"
        ax.set(title=title, xlabel="Rushing yards in the game", ylabel=ylabel)
    return fig


def _histogram_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Return about ``bins`` equal bins, with integer width centred on integers for counts.

    Yards are whole numbers, and bins of fractional width hold unequal numbers of integers,
    which draws spurious spikes and dips.
    """
    if not np.allclose(values, np.round(values)):
        return np.histogram_bin_edges(values, bins=bins)
    low, high = float(values.min()), float(values.max())
    width = max(1, int(np.ceil((high - low + 1) / bins)))
    return np.arange(low - 0.5, high + width, width)


def plot_interval_kind_coverage(
    results: Mapping[str, Mapping[str, Any]],
    *,
    levels: Sequence[float] = DEFAULT_LEVELS,
    labels: Mapping[str, str] | None = None,
    title: str = "Coverage of mean-only and predictive intervals",
) -> Figure:
    """Compare observed coverage per nominal level for interval kinds such as mean-only/predictive.

    Parameters
    ----------
    results : Mapping[str, Mapping]
        Result dicts keyed by run id or kind. Each needs ``metrics["coverage_<pct>"]`` for
        every level. Bootstrap bounds in ``metric_intervals`` become error bars.
    levels : Sequence[float]
        Nominal central interval levels.
    labels : Mapping[str, str], optional
        Display names per key.
    title : str
        Axes title.

    Returns
    -------
    Figure
    """
    usable = _usable_results(results)
    nominal = np.asarray(levels, dtype=float)
    with thesis_style():
        fig, ax = plt.subplots(figsize=(HALF_WIDTH, HALF_WIDTH))
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.0, label="ideal")
        markers = ("o", "s", "^", "D", "v")
        for index, (run_id, result) in enumerate(usable.items()):
            keys = [f"coverage_{_level_key(level)}" for level in nominal]
            observed = np.array([_metric(result, run_id, key) for key in keys])
            extents = np.array(
                [
                    _errorbar_extent(value, _interval(result, key))
                    for value, key in zip(observed, keys, strict=True)
                ]
            ).T
            ax.errorbar(
                nominal,
                observed,
                yerr=extents,
                marker=markers[index % len(markers)],
                color=OKABE_ITO[index % len(OKABE_ITO)],
                label=_label(run_id, labels),
            )
        ax.set(
            title=_wrap_title(title, HALF_WIDTH),
            xlabel="Nominal interval level",
            ylabel="Observed coverage",
            xlim=(0, 1),
            ylim=(0, 1.02),
            aspect="equal",
        )
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.legend(loc="best")
    return fig


def plot_interval_bands(
    predictions: Mapping[str, pd.DataFrame],
    *,
    level: float = 0.9,
    n_rows: int = 40,
    seed: int = 0,
    y_column: str = "rushing_yards",
    title: str | None = None,
) -> Figure:
    """Draw central intervals of several interval kinds for the same sampled test rows.

    Parameters
    ----------
    predictions : Mapping[str, pandas.DataFrame]
        Prediction frames keyed by display name, each with ``row_id``, the target and the
        quantile columns for ``(1 - level) / 2`` and ``(1 + level) / 2``.
    level : float
        Central interval level.
    n_rows : int
        Number of rows sampled from the rows present in every frame.
    seed : int
        Seed of the row sample.
    y_column : str
        Observed target column.
    title : str, optional
        Axes title. The default names the level and the number of rows.

    Returns
    -------
    Figure
    """
    if not predictions:
        raise FigureInputError("no prediction frames given; pass at least one frame")
    if not 0 < level < 1:
        raise FigureInputError(f"level {level} is outside (0, 1); pass for example 0.9")
    frames = {}
    for name, frame in predictions.items():
        _require_columns(frame, ["row_id", y_column], name)
        frames[name] = frame.set_index("row_id")
    shared = sorted(set.intersection(*(set(frame.index) for frame in frames.values())))
    if not shared:
        raise FigureInputError(
            f"prediction frames {list(frames)} share no row_id; pass predictions of the same rows"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(shared, size=min(n_rows, len(shared)), replace=False)
    first = next(iter(frames.values())).loc[chosen]
    order = first[y_column].astype(float).sort_values(kind="stable").index
    positions = np.arange(len(order))
    lower_level, upper_level = (1 - level) / 2, (1 + level) / 2
    offsets = np.linspace(-0.2, 0.2, len(frames)) if len(frames) > 1 else np.zeros(1)
    with thesis_style():
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 2.8))
        for index, (name, frame) in enumerate(frames.items()):
            rows = frame.loc[order]
            lower = _quantile(rows, lower_level, name)
            upper = _quantile(rows, upper_level, name)
            ax.vlines(
                positions + offsets[index],
                lower,
                upper,
                color=OKABE_ITO[index % len(OKABE_ITO)],
                linewidth=1.6,
                label=f"{name} {level:.0%} interval",
            )
        observed = first.loc[order, y_column].astype(float)
        ax.scatter(positions, observed, color="black", s=8, zorder=3, label="observed")
        ax.set(
            title=title or f"{level:.0%} intervals for {len(order)} sampled test games",
            xlabel="Sampled test game (sorted by observed yards)",
            ylabel="Rushing yards",
            xticks=[],
        )
        ax.grid(axis="x", visible=False)
        fig.legend(loc="outside lower center", ncols=len(frames) + 1)
    return fig


def calibration_points(frame: pd.DataFrame, *, y_column: str = "rushing_yards") -> pd.DataFrame:
    """Return nominal quantile levels and the observed share of targets at or below them.

    Parameters
    ----------
    frame : pandas.DataFrame
        Prediction frame with the target and the quantile grid columns.
    y_column : str
        Observed target column.

    Returns
    -------
    pandas.DataFrame
        Columns ``nominal`` and ``observed``, one row per quantile level.
    """
    _require_columns(frame, [y_column], "prediction frame")
    columns = quantile_columns(frame)
    if not columns:
        raise FigureInputError(
            "prediction frame has no quantile columns like 'q0.050'; write the quantile grid"
        )
    y = frame[y_column].astype(float).to_numpy()
    observed = [
        float(np.mean(y <= frame[column].astype(float).to_numpy())) for column in columns.values()
    ]
    return pd.DataFrame({"nominal": list(columns), "observed": observed})


def plot_calibration_curves(
    curves: Mapping[str, pd.DataFrame],
    *,
    title: str = "Calibration of predictive quantiles",
) -> Figure:
    """Draw the calibration curves of all models in one panel with the diagonal.

    Parameters
    ----------
    curves : Mapping[str, pandas.DataFrame]
        Per display name either a frame with ``nominal`` and ``observed`` columns (as returned
        by ``evaluation.calibration_curve``) or a prediction frame, which `calibration_points`
        turns into one.
    title : str
        Axes title.

    Returns
    -------
    Figure
    """
    if not curves:
        raise FigureInputError("no calibration curves given; pass at least one model")
    # Beyond a few models the legend would cover the curves, so it moves beside the axes.
    legend_outside = len(curves) > 4
    figsize = (FULL_WIDTH, HALF_WIDTH + 0.3) if legend_outside else (HALF_WIDTH, HALF_WIDTH)
    with thesis_style():
        fig, ax = plt.subplots(figsize=figsize)
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1.0, label="ideal")
        for index, (name, frame) in enumerate(curves.items()):
            if not {"nominal", "observed"} <= set(frame.columns):
                frame = calibration_points(frame)
            points = frame.sort_values("nominal")
            ax.plot(
                points["nominal"],
                points["observed"],
                color=OKABE_ITO[index % len(OKABE_ITO)],
                # Dashes tell apart models that share a colour once the palette repeats.
                linestyle="--" if (index // len(OKABE_ITO)) % 2 else "-",
                label=name,
            )
        ax.set(
            title=_wrap_title(title, HALF_WIDTH),
            xlabel="Nominal level",
            ylabel="Observed frequency",
            xlim=(0, 1),
            ylim=(0, 1),
            aspect="equal",
        )
        if legend_outside:
            ax.legend(loc="center left", bbox_to_anchor=(1.03, 0.5))
        else:
            ax.legend(loc="lower right")
    return fig


def plot_coverage_width(
    results: Mapping[str, Mapping[str, Any]],
    *,
    level: float = 0.9,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Plot coverage against mean interval width per model, with bootstrap error bars.

    Parameters
    ----------
    results : Mapping[str, Mapping]
        Result dicts keyed by run id. Each needs ``metrics["coverage_<pct>"]`` and
        ``metrics["width_<pct>_mean"]``. Bounds in ``metric_intervals`` become error bars.
    level : float
        Central interval level.
    labels : Mapping[str, str], optional
        Display names per run id.
    title : str, optional
        Axes title. The default names the level.

    Returns
    -------
    Figure
    """
    usable = _usable_results(results)
    pct = _level_key(level)
    coverage_key, width_key = f"coverage_{pct}", f"width_{pct}_mean"
    # Seven markers against eight colours: no pair of marker and colour repeats within 56 runs.
    markers = ("o", "s", "^", "D", "v", "P", "X")
    with thesis_style():
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 3.0))
        ax.axhline(level, color="0.5", linestyle=":", linewidth=1.0, label=f"nominal {level:.0%}")
        for index, (run_id, result) in enumerate(usable.items()):
            coverage = _metric(result, run_id, coverage_key)
            width = _metric(result, run_id, width_key)
            ax.errorbar(
                [width],
                [coverage],
                xerr=np.array([_errorbar_extent(width, _interval(result, width_key))]).T,
                yerr=np.array([_errorbar_extent(coverage, _interval(result, coverage_key))]).T,
                marker=markers[index % len(markers)],
                color=OKABE_ITO[index % len(OKABE_ITO)],
                linestyle="none",
                label=_label(run_id, labels),
            )
        ax.set(
            title=title or f"Coverage and sharpness of {level:.0%} intervals",
            xlabel=f"Mean {level:.0%} interval width (yards)",
            ylabel=f"Observed {level:.0%} coverage",
        )
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_pit_histograms(
    predictions: Mapping[str, pd.DataFrame | np.ndarray],
    *,
    bins: int = 10,
    ncols: int = 3,
    title: str = "Probability integral transform of test rows",
) -> Figure:
    """Draw one PIT histogram per model as small multiples, with the uniform density line.

    Parameters
    ----------
    predictions : Mapping[str, pandas.DataFrame or numpy.ndarray]
        Per display name a prediction frame with a ``pit`` column, or the PIT values.
    bins : int
        Number of equal bins on [0, 1].
    ncols : int
        Panels per row.
    title : str
        Figure title above the panels.

    Returns
    -------
    Figure
    """
    if not predictions:
        raise FigureInputError("no PIT values given; pass at least one prediction frame")
    nrows, ncols = _grid_shape(len(predictions), ncols)
    with thesis_style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(FULL_WIDTH, 1.9 * nrows + 0.4),
            sharex=True,
            sharey=True,
            squeeze=False,
        )
        for index, (name, values) in enumerate(predictions.items()):
            if isinstance(values, pd.DataFrame):
                _require_columns(values, ["pit"], name)
                values = values["pit"].to_numpy()
            pit = np.asarray(values, dtype=float)
            pit = pit[np.isfinite(pit)]
            ax = axes.flat[index]
            ax.hist(
                pit,
                bins=np.linspace(0, 1, bins + 1),
                density=True,
                color=OKABE_ITO[index % len(OKABE_ITO)],
                edgecolor="white",
                linewidth=0.3,
            )
            ax.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
            ax.set(
                title=name,
                xlabel="PIT",
                ylabel="Density" if index % ncols == 0 else "",
                xlim=(0, 1),
            )
        for ax in axes.flat[len(predictions) :]:
            ax.set_visible(False)
        _label_bottom_panels(axes, len(predictions), "PIT")
        fig.suptitle(title)
    return fig


def plot_gate_weights(
    weights: Mapping[str, Sequence[float]] | pd.DataFrame,
    *,
    expert_names: Sequence[str] | None = None,
    title: str = "Mean gate weight per expert",
) -> Figure:
    """Draw grouped bars of mean gate weight per expert, one bar per split (train, test).

    Parameters
    ----------
    weights : Mapping[str, Sequence[float]] or pandas.DataFrame
        Mean gate weight per expert for each split: a mapping from split name to one value per
        expert, or a frame with experts as index and splits as columns.
    expert_names : Sequence[str], optional
        Expert names. Defaults to the frame index or ``expert 1``, ``expert 2``, ...
    title : str
        Axes title.

    Returns
    -------
    Figure
    """
    table = weights if isinstance(weights, pd.DataFrame) else pd.DataFrame(dict(weights))
    if table.empty:
        raise FigureInputError("gate weights are empty; pass one weight per expert and split")
    if expert_names is not None:
        if len(expert_names) != len(table):
            raise FigureInputError(
                f"{len(expert_names)} expert names for {len(table)} experts; pass one name each"
            )
        table.index = list(expert_names)
    elif not isinstance(weights, pd.DataFrame):
        table.index = [f"expert {index + 1}" for index in range(len(table))]
    positions = np.arange(len(table))
    bar_width = 0.8 / table.shape[1]
    with thesis_style():
        fig, ax = plt.subplots(figsize=(HALF_WIDTH, 2.4))
        for index, split in enumerate(table.columns):
            ax.bar(
                positions + (index - (table.shape[1] - 1) / 2) * bar_width,
                table[split].astype(float),
                width=bar_width,
                color=OKABE_ITO[index % len(OKABE_ITO)],
                label=str(split),
            )
        ax.set(
            title=_wrap_title(title, HALF_WIDTH),
            xlabel="Expert",
            ylabel="Mean gate weight",
            ylim=(0, 1),
        )
        ax.grid(axis="x", visible=False)
        ax.set_xticks(positions, [str(name) for name in table.index])
        ax.legend(ncols=table.shape[1], loc="upper right")
    return fig


def plot_player_intervals(
    predictions: pd.DataFrame,
    players: Sequence[str],
    *,
    season: int | None = None,
    name_column: str = "player_name",
    y_column: str = "rushing_yards",
    ncols: int = 2,
    title: str | None = None,
) -> Figure:
    """Draw week-by-week median and 50%/90% predictive bands with observed yards per player.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Prediction frame with ``season``, ``week``, the target and quantile columns for
        0.05, 0.25, 0.5, 0.75 and 0.95.
    players : Sequence[str]
        Player names (matched in ``name_column`` when present) or player ids.
    season : int, optional
        Season to draw. Defaults to the latest season in the frame.
    name_column : str
        Column with display names, else ``player_id``.
    y_column : str
        Observed target column.
    ncols : int
        Panels per row.
    title : str, optional
        Figure title. The default names the season.

    Returns
    -------
    Figure
    """
    _require_columns(predictions, ["season", "week", y_column], "player predictions")
    if not players:
        raise FigureInputError("no players given; pass at least one player name or id")
    key = name_column if name_column in predictions.columns else "player_id"
    _require_columns(predictions, [key], "player predictions")
    if season is None:
        season = int(predictions["season"].max())
    in_season = predictions[predictions["season"] == season]
    missing = [player for player in players if not (in_season[key] == player).any()]
    if missing:
        raise FigureInputError(
            f"players {missing} have no rows in column {key!r} for season {season}; "
            "check the spelling or the season"
        )
    if key != "player_id" and "player_id" in in_season.columns:
        ids_per_name = in_season.groupby(key)["player_id"].nunique()
        shared = [player for player in players if ids_per_name.get(player, 0) > 1]
        if shared:
            raise FigureInputError(
                f"names {shared} belong to more than one player in season {season}; "
                "pass player ids with name_column='player_id' or choose other players"
            )
    nrows, ncols = _grid_shape(len(players), ncols)
    with thesis_style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(FULL_WIDTH, 2.1 * nrows + 0.5),
            sharex=True,
            sharey=True,
            squeeze=False,
        )
        for index, player in enumerate(players):
            rows = in_season[in_season[key] == player].sort_values("week")
            ax = axes.flat[index]
            _draw_player_panel(ax, rows, y_column, str(player))
            ax.set(
                title=str(player),
                xlabel="Week",
                ylabel="Rushing yards" if index % ncols == 0 else "",
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes.flat[len(players) :]:
            ax.set_visible(False)
        _label_bottom_panels(axes, len(players), "Week")
        handles, legend_labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, legend_labels, loc="outside lower center", ncols=len(handles))
        fig.suptitle(title or f"Predictive intervals over the {season} season")
    return fig


def _draw_player_panel(ax: plt.Axes, rows: pd.DataFrame, y_column: str, source: str) -> None:
    weeks = rows["week"].astype(int).to_numpy()
    q05, q25, q50, q75, q95 = (
        _quantile(rows, level, source) for level in (0.05, 0.25, 0.5, 0.75, 0.95)
    )
    ax.fill_between(weeks, q05, q95, color=OKABE_ITO[4], alpha=0.35, linewidth=0, label="90%")
    ax.fill_between(weeks, q25, q75, color=OKABE_ITO[0], alpha=0.45, linewidth=0, label="50%")
    ax.plot(weeks, q50, color=OKABE_ITO[0], label="median")
    observed = rows[y_column].astype(float).to_numpy()
    outside = (observed < q05.to_numpy()) | (observed > q95.to_numpy())
    ax.scatter(weeks[~outside], observed[~outside], color="black", s=10, zorder=3, label="observed")
    ax.scatter(
        weeks[outside],
        observed[outside],
        color=OKABE_ITO[1],
        marker="D",
        s=12,
        zorder=3,
        label="outside 90%",
    )


def plot_model_comparison(
    results: Mapping[str, Mapping[str, Any]],
    *,
    metrics: str | Sequence[str] = ("crps", "mae"),
    labels: Mapping[str, str] | None = None,
    title: str = "Test metrics with 90% player bootstrap intervals",
) -> Figure:
    """Draw horizontal bars of one or more metrics per model with bootstrap error bars.

    Parameters
    ----------
    results : Mapping[str, Mapping]
        Result dicts keyed by run id. ``metrics`` contains the values and ``metric_intervals``
        the bootstrap bounds (missing bounds draw no error bar).
    metrics : str or Sequence[str]
        Metric keys, one panel each.
    labels : Mapping[str, str], optional
        Display names per run id.
    title : str
        Figure title above the panels.

    Returns
    -------
    Figure
    """
    usable = _usable_results(results)
    metric_keys = [metrics] if isinstance(metrics, str) else list(metrics)
    names = [_label(run_id, labels) for run_id in usable]
    positions = np.arange(len(names))
    with thesis_style():
        fig, axes = plt.subplots(
            1,
            len(metric_keys),
            figsize=(FULL_WIDTH, 0.28 * len(names) + 1.2),
            sharey=True,
            squeeze=False,
        )
        for index, metric in enumerate(metric_keys):
            ax = axes[0, index]
            values = [_metric(result, run_id, metric) for run_id, result in usable.items()]
            extents = np.array(
                [
                    _errorbar_extent(value, _interval(result, metric))
                    for value, result in zip(values, usable.values(), strict=True)
                ]
            ).T
            ax.barh(
                positions,
                values,
                xerr=extents,
                color=OKABE_ITO[index % len(OKABE_ITO)],
                error_kw={"ecolor": "0.2", "elinewidth": 0.8},
            )
            nominal = _nominal_coverage(metric)
            if nominal is not None:
                ax.axvline(nominal, color="black", linestyle=":", linewidth=1.0)
                ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            unit = "Share of test games" if nominal is not None else "Yards"
            ax.set(title=metric_name(metric), xlabel=unit, ylabel="")
            ax.grid(axis="y", visible=False)
        axes[0, 0].set_yticks(positions, names)
        axes[0, 0].invert_yaxis()
        fig.suptitle(title)
    return fig


def plot_metric_by_tier(
    results: Mapping[str, Mapping[str, Any]],
    *,
    metric: str = "coverage_90",
    tiers: Sequence[str] = ("low", "middle", "high"),
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw grouped bars of one metric per workload tier, one bar per model.

    Parameters
    ----------
    results : Mapping[str, Mapping]
        Result dicts keyed by run id, with the values in ``metrics_by_tier[tier][metric]``.
    metric : str
        Metric key.
    tiers : Sequence[str]
        Tiers in drawing order.
    labels : Mapping[str, str], optional
        Display names per run id.
    title : str, optional
        Axes title. The default names the metric.

    Returns
    -------
    Figure
    """
    usable = _usable_results(results)
    positions = np.arange(len(tiers))
    bar_width = 0.8 / len(usable)
    with thesis_style():
        fig, ax = plt.subplots(figsize=(FULL_WIDTH, 2.8))
        for index, (run_id, result) in enumerate(usable.items()):
            by_tier = result.get("metrics_by_tier") or {}
            values = []
            for tier in tiers:
                if tier not in by_tier or metric not in by_tier[tier]:
                    raise FigureInputError(
                        f"result {run_id!r} has no metrics_by_tier[{tier!r}][{metric!r}]; "
                        "check the tier and metric names or rerun the notebook"
                    )
                values.append(float(by_tier[tier][metric]))
            ax.bar(
                positions + (index - (len(usable) - 1) / 2) * bar_width,
                values,
                width=bar_width,
                color=OKABE_ITO[index % len(OKABE_ITO)],
                label=_label(run_id, labels),
            )
        nominal = _nominal_coverage(metric)
        if nominal is not None:
            ax.axhline(
                nominal, color="black", linestyle=":", linewidth=1.0, label=f"nominal {nominal:.0%}"
            )
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set(
            title=title or f"{metric_name(metric)} by workload tier",
            xlabel="Workload tier (recent carries)",
            ylabel=_metric_axis_label(metric),
        )
        ax.grid(axis="x", visible=False)
        ax.set_xticks(positions, [str(tier) for tier in tiers])
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_sensitivity(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("coverage_90", "crps"),
    title: str = "Sensitivity to the swept parameters, with 90% player bootstrap intervals",
) -> Figure:
    """Draw each metric against the sweep values, one row of panels per swept series.

    Parameters
    ----------
    frame : pandas.DataFrame
        Output of :func:`rbyards.sweeps.sensitivity_frame`. Values are placed in sweep order at
        equal spacing, because a value may be a list; points without a metric are left out.
    metrics : Sequence[str]
        Metric columns, one panel column each; a coverage panel marks the nominal level.
    title : str
        Figure title.

    Returns
    -------
    Figure

    Raises
    ------
    FigureInputError
        When ``frame`` has no rows.
    """
    from rbyards.tables import sweep_group_label

    if len(frame) == 0:
        raise FigureInputError("no sweep points given; add a sweep section to the parameters")
    keys = ["phase", "feature_set", "parameter", "model"]
    groups = list(frame.groupby(keys, sort=False))
    with thesis_style():
        fig, axes = plt.subplots(
            len(groups),
            len(metrics),
            figsize=(FULL_WIDTH, 1.9 * len(groups) + 0.8),
            squeeze=False,
        )
        for row_index, (group_key, rows) in enumerate(groups):
            rows = rows.sort_values("position")
            positions = np.arange(len(rows))
            for column, metric in enumerate(metrics):
                ax = axes[row_index, column]
                values = rows[metric].to_numpy(dtype=float)
                lower = np.nan_to_num(values - rows[f"{metric}_lower"].to_numpy(dtype=float))
                upper = np.nan_to_num(rows[f"{metric}_upper"].to_numpy(dtype=float) - values)
                ax.errorbar(
                    positions,
                    values,
                    yerr=np.vstack([np.maximum(lower, 0.0), np.maximum(upper, 0.0)]),
                    fmt="o-",
                    markersize=3.5,
                    color=OKABE_ITO[column % len(OKABE_ITO)],
                    elinewidth=0.8,
                )
                nominal = _nominal_coverage(metric)
                if nominal is not None:
                    ax.axhline(nominal, color="black", linestyle=":", linewidth=1.0)
                    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
                ax.set_xticks(positions, rows["value"].tolist())
                ax.set(
                    title=f"{sweep_group_label(*group_key)}\n{metric_name(metric)}",
                    xlabel=group_key[2].rsplit(".", 1)[-1],
                    ylabel="Share of test games" if nominal is not None else "Yards",
                )
        fig.suptitle(title)
    return fig
