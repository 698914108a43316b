"""Tests for rbyards.figures: style, file writing and the data each figure draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle
from PIL import Image
from rbyards import figures
from scipy import stats

LEVELS = np.unique(np.round(np.r_[np.arange(1, 100) / 100, 0.025, 0.975, 0.16, 0.84], 3))
PLAYERS = ("Derrick Henry", "Saquon Barkley", "Bijan Robinson")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_predictions(scale: float = 1.0, n_weeks: int = 12, seed: int = 0) -> pd.DataFrame:
    """Build a prediction frame: one row per player and week, normal quantiles in yards."""
    rng = np.random.default_rng(seed)
    rows = []
    for player_index, player in enumerate(PLAYERS):
        for week in range(7, 7 + n_weeks):
            rows.append(
                {
                    "row_id": f"p{player_index}_2024_{week:02d}",
                    "player_id": f"00-{player_index}",
                    "player_name": player,
                    "season": 2024,
                    "week": week,
                    "rushing_yards": float(rng.normal(60 + 10 * player_index, 30)),
                    "tier": ("low", "middle", "high")[player_index],
                    "center": 60.0 + 10 * player_index + week,
                }
            )
    frame = pd.DataFrame(rows)
    quantiles = {
        f"q{level:.3f}": frame["center"] + stats.norm.ppf(level) * 30 * scale for level in LEVELS
    }
    frame = pd.concat([frame, pd.DataFrame(quantiles)], axis=1)
    frame["pit"] = stats.norm.cdf((frame["rushing_yards"] - frame["center"]) / (30 * scale))
    return frame.drop(columns="center")


def make_result(coverage_90: float, width: float, crps: float, status: str = "ok") -> dict:
    coverages = {50: coverage_90 * 0.5, 68: coverage_90 * 0.7, 80: coverage_90 * 0.85}
    coverages.update({90: coverage_90, 95: min(coverage_90 + 0.04, 1.0)})
    metrics = {f"coverage_{level}": value for level, value in coverages.items()}
    metrics.update({"width_90_mean": width, "mae": crps * 1.4, "crps": crps, "n_rows": 300})
    intervals = {key: [value - 0.02, value + 0.03] for key, value in metrics.items()}
    tiers = {
        tier: {"coverage_90": coverage_90 + shift, "crps": crps + 10 * shift}
        for tier, shift in (("low", 0.03), ("middle", 0.0), ("high", -0.05))
    }
    return {
        "phase": "phase2",
        "status": status,
        "metrics": metrics,
        "metric_intervals": intervals,
        "metrics_by_tier": tiers,
    }


@pytest.fixture
def results() -> dict[str, dict]:
    return {
        "phase1.seed": make_result(0.262, 22.0, 25.1),
        "phase2_1.seed": make_result(0.905, 108.0, 23.9),
        "lightgbm.seed": make_result(0.86, 95.5, 24.8),
    }


# ---------------------------------------------------------------------------------------------
# Style and saving


def test_thesis_style_sets_font_and_palette():
    with matplotlib.rc_context():
        figures.use_thesis_style()
        assert plt.rcParams["font.family"] == ["serif"]
        assert plt.rcParams["font.serif"][0] == "DejaVu Serif"
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        assert [color.upper() for color in colors] == list(figures.OKABE_ITO)
        assert plt.rcParams["pdf.fonttype"] == 42


def test_thesis_widths():
    assert figures.FULL_WIDTH == 6.3
    assert figures.HALF_WIDTH == 3.1


def test_figure_file_stem_joins_params():
    stem = figures.figure_file_stem("calibration_curves", fs="seed", level=0.9, note="a b/c")
    assert stem == "calibration_curves-fs_seed-level_0.9-note_a_b_c"


@pytest.mark.parametrize("name", ["", "../escape", "with space", "-leading"])
def test_figure_file_stem_rejects_unsafe_name(name):
    with pytest.raises(figures.FigureInputError, match="not usable as a file name"):
        figures.figure_file_stem(name)


def test_save_figure_writes_pdf_and_300dpi_png(tmp_path):
    fig, ax = plt.subplots(figsize=(figures.HALF_WIDTH, 2.0), layout=None)
    ax.plot([0, 1], [0, 1])
    saved = figures.save_figure(fig, "calibration_curves", tmp_path / "figs", fs="seed")

    assert saved.pdf == tmp_path / "figs" / "calibration_curves-fs_seed.pdf"
    assert saved.png == tmp_path / "figs" / "calibration_curves-fs_seed.png"
    assert saved.pdf.read_bytes().startswith(b"%PDF")
    with Image.open(saved.png) as image:
        dpi_x, dpi_y = image.info["dpi"]
        width_px, height_px = image.size
    assert round(dpi_x) == 300
    assert round(dpi_y) == 300
    assert width_px == round(figures.HALF_WIDTH * 300)
    assert height_px == 600
    # Atomic writes leave no temporary files behind.
    assert sorted(path.name for path in (tmp_path / "figs").iterdir()) == [
        "calibration_curves-fs_seed.pdf",
        "calibration_curves-fs_seed.png",
    ]


def test_save_figure_png_reads_back_in_matplotlib(tmp_path):
    fig = figures.plot_gate_weights({"train": [0.6, 0.4], "test": [0.5, 0.5]})
    saved = figures.save_figure(fig, "gate_weights", tmp_path)
    pixels = plt.imread(saved.png)
    assert pixels.shape[1] == round(figures.HALF_WIDTH * 300)


def test_save_figure_embeds_truetype_fonts(tmp_path):
    fig = figures.plot_gate_weights({"train": [0.6, 0.4], "test": [0.5, 0.5]})
    pdf_bytes = figures.save_figure(fig, "gate_weights", tmp_path).pdf.read_bytes()
    assert b"DejaVuSerif" in pdf_bytes
    assert b"/Type3" not in pdf_bytes


def test_save_figure_pdf_is_reproducible(tmp_path):
    fig = figures.plot_gate_weights({"train": [0.6, 0.4], "test": [0.5, 0.5]})
    first = figures.save_figure(fig, "gate_weights", tmp_path / "a").pdf.read_bytes()
    second = figures.save_figure(fig, "gate_weights", tmp_path / "b").pdf.read_bytes()
    assert first == second


# ---------------------------------------------------------------------------------------------
# Figure content


def _bar_values(ax, horizontal: bool = False) -> list[float]:
    bars = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    return [bar.get_width() if horizontal else bar.get_height() for bar in bars]


def _errorbar(ax, label: str):
    return [item for item in ax.containers if item.get_label() == label][0]


def test_target_distribution_counts_every_row():
    frame = make_predictions()
    fig = figures.plot_target_distribution(frame)
    ax = fig.axes[0]
    assert sum(_bar_values(ax)) == len(frame)
    assert ax.get_xlabel() == "Rushing yards in the game"
    assert ax.get_title() == "Rushing yards per game"


def test_target_distribution_by_group_labels_counts():
    frame = make_predictions().assign(role=lambda df: np.where(df["week"] < 10, "train", "test"))
    fig = figures.plot_target_distribution(frame, by="role")
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["test (n=27)", "train (n=9)"]


def test_interval_kind_coverage_draws_result_values(results):
    fig = figures.plot_interval_kind_coverage(results, levels=(0.5, 0.9))
    ax = fig.axes[0]
    model_line = _errorbar(ax, "phase1.seed").lines[0]
    np.testing.assert_allclose(model_line.get_xdata(), [0.5, 0.9])
    np.testing.assert_allclose(model_line.get_ydata(), [0.262 * 0.5, 0.262])


def test_interval_kind_coverage_missing_level_names_key(results):
    with pytest.raises(figures.FigureInputError, match="coverage_99"):
        figures.plot_interval_kind_coverage(results, levels=(0.99,))


def test_interval_bands_draw_quantiles_of_shared_rows():
    narrow, wide = make_predictions(scale=0.2), make_predictions(scale=1.0)
    fig = figures.plot_interval_bands({"mean-only": narrow, "predictive": wide}, n_rows=5)
    ax = fig.axes[0]
    collections = [item for item in ax.collections if isinstance(item, LineCollection)]
    assert len(collections) == 2
    segments = collections[1].get_segments()
    assert len(segments) == 5
    lower_values = {round(float(segment[0][1]), 6) for segment in segments}
    assert lower_values <= set(wide["q0.050"].round(6))


def test_interval_bands_reject_disjoint_rows():
    first = make_predictions()
    second = first.assign(row_id=first["row_id"] + "_other")
    with pytest.raises(figures.FigureInputError, match="share no row_id"):
        figures.plot_interval_bands({"a": first, "b": second})


def test_calibration_points_count_targets_below_quantile():
    frame = pd.DataFrame({"rushing_yards": [10.0, 20.0, 30.0, 40.0], "q0.500": [25.0] * 4})
    points = figures.calibration_points(frame)
    assert points["nominal"].tolist() == [0.5]
    assert points["observed"].tolist() == [0.5]


def test_calibration_curves_one_line_per_model_plus_diagonal():
    curve = pd.DataFrame({"nominal": [0.1, 0.5, 0.9], "observed": [0.2, 0.5, 0.8]})
    fig = figures.plot_calibration_curves({"given": curve, "computed": make_predictions()})
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["ideal", "given", "computed"]
    np.testing.assert_allclose(lines[1].get_ydata(), [0.2, 0.5, 0.8])
    assert len(lines[2].get_xdata()) == len(LEVELS)


def test_coverage_width_point_and_error_bars(results):
    fig = figures.plot_coverage_width(results, labels={"phase2_1.seed": "BNN"})
    ax = fig.axes[0]
    container = _errorbar(ax, "BNN")
    point = container.lines[0]
    assert point.get_xdata()[0] == pytest.approx(108.0)
    assert point.get_ydata()[0] == pytest.approx(0.905)
    x_bar, y_bar = container.lines[2]
    x_segment = x_bar.get_segments()[0]
    assert x_segment[0][0] == pytest.approx(108.0 - 0.02)
    assert x_segment[1][0] == pytest.approx(108.0 + 0.03)


def test_coverage_width_skips_failed_runs(results):
    results["broken.seed"] = {"status": "failed"}
    fig = figures.plot_coverage_width(results)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert "broken.seed" not in labels
    assert "phase1.seed" in labels


def test_coverage_width_styles_nine_runs_apart():
    many = {f"model{index}.seed": make_result(0.9, 70.0 + index, 20.0) for index in range(9)}
    fig = figures.plot_coverage_width(many)
    styles = []
    for index in range(9):
        point = _errorbar(fig.axes[0], f"model{index}.seed").lines[0]
        styles.append((point.get_marker(), matplotlib.colors.to_hex(point.get_color())))
    assert len(set(styles)) == 9


def test_all_failed_runs_raise():
    with pytest.raises(figures.FigureInputError, match="no result with status 'ok'"):
        figures.plot_coverage_width({"x": {"status": "failed"}})


def test_pit_histograms_are_densities():
    fig = figures.plot_pit_histograms({"a": make_predictions(), "b": make_predictions(0.5)}, bins=5)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["a", "b"]
    heights = _bar_values(visible[0])
    assert len(heights) == 5
    assert sum(heights) * 0.2 == pytest.approx(1.0)


def test_pit_histograms_label_lowest_panel_of_each_column():
    frames = {name: make_predictions() for name in "abcd"}
    fig = figures.plot_pit_histograms(frames, ncols=3)
    axes = fig.axes
    # Four panels on a 2 x 3 grid: panels 1 and 2 have no panel below them.
    assert [ax.get_xlabel() for ax in axes[:4]] == ["", "PIT", "PIT", "PIT"]
    assert axes[1].xaxis.get_tick_params()["labelbottom"] is True
    assert axes[4].get_visible() is False
    assert axes[5].get_visible() is False


def test_gate_weights_bars_match_input():
    fig = figures.plot_gate_weights(
        {"train": [0.5, 0.3, 0.2], "test": [0.4, 0.4, 0.2]}, expert_names=["a", "b", "c"]
    )
    ax = fig.axes[0]
    np.testing.assert_allclose(_bar_values(ax), [0.5, 0.3, 0.2, 0.4, 0.4, 0.2])
    assert [label.get_text() for label in ax.get_xticklabels()] == ["a", "b", "c"]


def test_gate_weights_reject_wrong_name_count():
    with pytest.raises(figures.FigureInputError, match="2 expert names for 3 experts"):
        figures.plot_gate_weights({"train": [0.5, 0.3, 0.2]}, expert_names=["a", "b"])


def test_player_intervals_median_follows_weeks():
    frame = make_predictions().sample(frac=1.0, random_state=1)
    fig = figures.plot_player_intervals(frame, ["Saquon Barkley", "Derrick Henry"])
    ax = fig.axes[0]
    assert ax.get_title() == "Saquon Barkley"
    median = [line for line in ax.get_lines() if line.get_label() == "median"][0]
    expected = frame[frame["player_name"] == "Saquon Barkley"].sort_values("week")
    np.testing.assert_allclose(median.get_xdata(), expected["week"])
    np.testing.assert_allclose(median.get_ydata(), expected["q0.500"])


def test_player_intervals_unknown_player_is_named():
    with pytest.raises(figures.FigureInputError, match="Nobody"):
        figures.plot_player_intervals(make_predictions(), ["Derrick Henry", "Nobody"])


def test_player_intervals_shared_name_rejected():
    frame = make_predictions()
    frame.loc[frame["player_name"] == "Derrick Henry", "player_name"] = "Saquon Barkley"
    with pytest.raises(figures.FigureInputError, match="more than one player"):
        figures.plot_player_intervals(frame, ["Saquon Barkley"])


def test_calibration_legend_outside_for_many_models():
    curve = pd.DataFrame({"nominal": [0.1, 0.5, 0.9], "observed": [0.12, 0.5, 0.88]})
    few = figures.plot_calibration_curves({"a": curve, "b": curve})
    many = figures.plot_calibration_curves({f"model {i}": curve for i in range(9)})
    assert few.axes[0].get_legend()._loc == 4  # lower right, inside the axes
    assert many.get_figwidth() > few.get_figwidth()
    lines = [line for line in many.axes[0].get_lines() if line.get_label().startswith("model")]
    # The ninth model reuses the first colour, so it is dashed.
    assert lines[0].get_color() == lines[8].get_color()
    assert lines[0].get_linestyle() == "-"
    assert lines[8].get_linestyle() == "--"


def test_model_comparison_bars_and_intervals(results):
    labels = {"phase1.seed": "Phase 1"}
    fig = figures.plot_model_comparison(results, metrics=["crps", "coverage_90"], labels=labels)
    crps_ax, coverage_ax = fig.axes
    np.testing.assert_allclose(_bar_values(crps_ax, horizontal=True), [25.1, 23.9, 24.8])
    np.testing.assert_allclose(_bar_values(coverage_ax, horizontal=True), [0.262, 0.905, 0.86])
    names = [label.get_text() for label in crps_ax.get_yticklabels()]
    assert names == ["Phase 1", "phase2_1.seed", "lightgbm.seed"]
    assert crps_ax.get_title() == "CRPS"
    assert coverage_ax.get_title() == "90% coverage"


def test_model_comparison_unknown_metric_names_run(results):
    with pytest.raises(figures.FigureInputError, match=r"phase1.seed.*'log_score'"):
        figures.plot_model_comparison(results, metrics="log_score")


def test_metric_by_tier_bars_match_input(results):
    fig = figures.plot_metric_by_tier(results, metric="crps")
    heights = _bar_values(fig.axes[0])
    np.testing.assert_allclose(heights[:3], [25.1 + 0.3, 25.1, 25.1 - 0.5])
    assert fig.axes[0].get_ylabel() == "CRPS (yards)"


def test_metric_by_tier_missing_tier_raises(results):
    with pytest.raises(figures.FigureInputError, match="'rookie'"):
        figures.plot_metric_by_tier(results, tiers=("low", "rookie"))


def test_every_figure_sets_title_and_labels(results):
    predictions = make_predictions()
    drawn = [
        figures.plot_target_distribution(predictions),
        figures.plot_interval_kind_coverage(results),
        figures.plot_interval_bands({"p": predictions}),
        figures.plot_calibration_curves({"p": predictions}),
        figures.plot_coverage_width(results),
        figures.plot_gate_weights({"train": [0.6, 0.4]}),
        figures.plot_metric_by_tier(results),
    ]
    for fig in drawn:
        ax = fig.axes[0]
        assert ax.get_title(), fig
        assert ax.get_xlabel(), fig
        assert ax.get_ylabel(), fig


def test_target_distribution_integer_bins_for_yards():
    frame = pd.DataFrame({"rushing_yards": np.arange(-3, 97, dtype=float)})
    fig = figures.plot_target_distribution(frame, bins=20)
    bars = [patch for patch in fig.axes[0].patches if isinstance(patch, Rectangle)]
    assert {bar.get_width() for bar in bars} == {5.0}
    assert bars[0].get_x() == -3.5
    assert [bar.get_height() for bar in bars] == [5.0] * 20
