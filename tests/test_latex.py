"""Tests for rbyards.latex: bundle contents, the reference check and the preview compile."""

from __future__ import annotations

import shutil

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from rbyards import figures, latex, tables

NO_PDFLATEX = shutil.which("pdflatex") is None
NO_PDFLATEX_REASON = (
    "pdflatex is not installed; install texlive-latex-base, texlive-latex-recommended, "
    "texlive-latex-extra and latexmk to compile the preview"
)


def make_profile(profile_dir, figure_params=({"fs": "seed"},)):
    """Write small figures and one table into a profile folder the way the notebooks do."""
    for params in figure_params:
        fig, ax = plt.subplots(figsize=(figures.HALF_WIDTH, 2.0))
        ax.plot([0, 1], [0, 1])
        ax.set(title="Test", xlabel="x", ylabel="y")
        figures.save_figure(fig, "calibration_curves", profile_dir / "figures", **params)
        plt.close(fig)
    result = {
        "status": "ok",
        "metrics": {"coverage_90": 0.88, "width_90_mean": 101.3, "mae": 34.0, "crps": 24.3},
        "metric_intervals": {"crps": [23.1, 25.6]},
    }
    table = tables.model_metrics_table(
        {"phase2_1.seed": result}, caption="Model metrics, all runs.", label="tab:models"
    )
    tables.write_table(table.fragment, table.float_, "model_metrics", profile_dir / "tables")


def test_bundle_collects_figures_and_tables(tmp_path):
    make_profile(tmp_path)
    latex_dir = latex.build_latex_bundle(tmp_path)

    assert latex_dir == tmp_path / "latex"
    assert (latex_dir / "figures" / "calibration_curves-fs_seed.pdf").is_file()
    assert (latex_dir / "tables" / "model_metrics.tex").is_file()
    assert not (latex_dir / "tables" / "model_metrics_float.tex").exists()
    figures_tex = (latex_dir / "figures.tex").read_text()
    assert r"\includegraphics{figures/calibration_curves-fs_seed.pdf}" in figures_tex
    assert r"\label{fig:calibration_curves-fs_seed}" in figures_tex
    assert (
        r"\caption{Calibration curves of every model: observed against nominal coverage "
        r"(seed features).}" in figures_tex
    )
    tables_tex = (latex_dir / "tables.tex").read_text()
    assert r"\input{tables/model_metrics}" in tables_tex
    # Caption and label come from the table's own float file.
    assert r"\caption{Model metrics, all runs.}" in tables_tex
    assert r"\label{tab:models}" in tables_tex


def test_bundle_preview_loads_packages_and_inputs(tmp_path):
    make_profile(tmp_path)
    preview = (latex.build_latex_bundle(tmp_path) / "preview.tex").read_text()
    assert r"\documentclass[11pt]{article}" in preview
    for package in ("booktabs", "threeparttable", "graphicx"):
        assert f"\\usepackage{{{package}}}" in preview
    assert preview.index(r"\input{figures}") < preview.index(r"\input{tables}")


def test_bundle_uses_given_captions(tmp_path):
    make_profile(tmp_path)
    captions = {"calibration_curves-fs_seed": "Calibration of all models."}
    latex_dir = latex.build_latex_bundle(tmp_path, captions=captions)
    assert r"\caption{Calibration of all models.}" in (latex_dir / "figures.tex").read_text()


def test_bundle_rebuild_drops_deleted_figures(tmp_path):
    make_profile(tmp_path, figure_params=({"fs": "seed"}, {"fs": "pregame"}))
    latex.build_latex_bundle(tmp_path)
    (tmp_path / "figures" / "calibration_curves-fs_pregame.pdf").unlink()
    latex_dir = latex.build_latex_bundle(tmp_path)
    assert not (latex_dir / "figures" / "calibration_curves-fs_pregame.pdf").exists()
    assert "fs_pregame" not in (latex_dir / "figures.tex").read_text()
    # No staging folders are left next to the bundle.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["figures", "latex", "tables"]


def test_bundle_flushes_floats(tmp_path):
    params = tuple({"n": index} for index in range(latex.FLOATS_PER_FLUSH + 1))
    make_profile(tmp_path, figure_params=params)
    figures_tex = (latex.build_latex_bundle(tmp_path) / "figures.tex").read_text()
    assert figures_tex.count(r"\begin{figure}") == latex.FLOATS_PER_FLUSH + 1
    assert figures_tex.count(r"\clearpage") == 1


def test_bundle_of_empty_profile_raises(tmp_path):
    with pytest.raises(latex.LatexBundleError, match="run the notebooks"):
        latex.build_latex_bundle(tmp_path)


def test_check_bundle_lists_missing_files(tmp_path):
    make_profile(tmp_path)
    latex_dir = latex.build_latex_bundle(tmp_path)
    found = {path.relative_to(latex_dir).as_posix() for path in latex.check_bundle(latex_dir)}
    assert found == {
        "figures/calibration_curves-fs_seed.pdf",
        "figures.tex",
        "tables.tex",
        "tables/model_metrics.tex",
    }

    (latex_dir / "figures" / "calibration_curves-fs_seed.pdf").unlink()
    (latex_dir / "tables" / "model_metrics.tex").unlink()
    with pytest.raises(latex.LatexBundleError) as raised:
        latex.check_bundle(latex_dir)
    message = str(raised.value)
    assert "2 missing file(s)" in message
    assert "figures/calibration_curves-fs_seed.pdf (\\includegraphics in figures.tex)" in message
    assert "tables/model_metrics (\\input in tables.tex)" in message


def test_check_bundle_resolves_extensions_and_ignores_comments(tmp_path):
    (tmp_path / "plot.png").write_bytes(b"png")
    (tmp_path / "part.tex").write_text("text")
    (tmp_path / "main.tex").write_text(
        "\\input{part}\n"
        "\\includegraphics[width=2in]{plot}\n"
        "% \\input{absent}\n"
        "50\\% done \\input{part.tex}\n"
    )
    found = latex.check_bundle(tmp_path)
    assert found == [tmp_path / "part.tex", tmp_path / "plot.png", tmp_path / "part.tex"]


def test_compile_preview_without_latex_returns_none(tmp_path, monkeypatch):
    make_profile(tmp_path)
    latex_dir = latex.build_latex_bundle(tmp_path)
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)
    assert latex.compile_preview(latex_dir) is None


@pytest.mark.skipif(NO_PDFLATEX, reason=NO_PDFLATEX_REASON)
def test_compile_preview_writes_pdf(tmp_path):
    make_profile(tmp_path, figure_params=({"fs": "seed", "level": 0.9},))
    pdf = latex.compile_preview(latex.build_latex_bundle(tmp_path))
    assert pdf == tmp_path / "latex" / "preview.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    log = (tmp_path / "latex" / "preview.log").read_text(errors="replace")
    assert "LaTeX Warning: Reference" not in log


@pytest.mark.skipif(NO_PDFLATEX, reason=NO_PDFLATEX_REASON)
def test_compile_preview_reports_latex_error(tmp_path):
    make_profile(tmp_path)
    latex_dir = latex.build_latex_bundle(tmp_path)
    (latex_dir / "tables" / "model_metrics.tex").write_text("\\undefinedmacro\n")
    with pytest.raises(latex.LatexCompileError, match="undefinedmacro"):
        latex.compile_preview(latex_dir)


@pytest.mark.skipif(NO_PDFLATEX, reason=NO_PDFLATEX_REASON)
def test_compile_preview_with_pdflatex_only(tmp_path, monkeypatch):
    make_profile(tmp_path)
    latex_dir = latex.build_latex_bundle(tmp_path)
    real_which = shutil.which
    monkeypatch.setattr(
        latex.shutil, "which", lambda name: None if name == "latexmk" else real_which(name)
    )
    pdf = latex.compile_preview(latex_dir)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert not (latex_dir / "preview.fdb_latexmk").exists()
    log = (latex_dir / "preview.log").read_text(errors="replace")
    assert "Rerun to get cross-references right" not in log


def test_unknown_figure_caption_from_stem():
    assert latex._default_figure_caption("shrinkage_plot-fs_seed") == "Shrinkage plot (fs seed)."


def test_known_figure_caption_escapes_run_id():
    caption = latex._default_figure_caption("player_intervals-fs_seed-run_phase2_1.seed")
    assert caption.startswith("Weekly predictive medians and 50\\% and 90\\% intervals")
    assert caption.endswith("(seed features, run phase2\\_1.seed).")
