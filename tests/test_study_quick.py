"""The whole study on the real nflverse files with the quick profile, through run_all.py.

One module-scoped run executes every notebook with papermill (about 6 minutes on 2 cores, plus
about 8 for the two backtest runs). The tests then check its outputs against each other: result
files, tables, the comparison file and the LaTeX bundle. The quick profile's chains are short, so
the checks are about the pipeline and the study's robust findings, not about converged posteriors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("phase1", "phase2_1", "phase2_2", "phase2_3")
FEATURE_SETS = ("seed", "pregame")


def _run_all(*arguments: str, data_dir: Path, output_root: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "run_all.py",
        *arguments,
        "--profile",
        "quick",
        "--output-root",
        str(output_root),
    ]
    environment = {**os.environ, "NFLVERSE_DIR": str(data_dir)}
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=3600
    )


@pytest.fixture(scope="module")
def study(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    output_root = tmp_path_factory.mktemp("outputs")
    first = _run_all("run", "--quiet", data_dir=real_data_dir, output_root=output_root)
    return {
        "first": first,
        "root": output_root / "quick",
        "output_root": output_root,
        "data_dir": real_data_dir,
    }


def _result(study: dict, run_id: str) -> dict:
    return json.loads((study["root"] / "results" / f"{run_id}.json").read_text())


def _data_rows(latex: str) -> list[list[str]]:
    body = latex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [
        [cell.strip() for cell in line.removesuffix(r" \\").split(" & ")]
        for line in body.strip().splitlines()
    ]


def _percent(cell: str) -> float:
    match = re.fullmatch(r"(-?\d+\.\d)\\%", cell)
    assert match, f"not a one-decimal percentage: {cell!r}"
    return float(match.group(1))


def test_run_exits_zero(study: dict):
    first = study["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]


def test_every_run_succeeded(study: dict):
    expected = ["data", "comparison"] + [
        f"{name}.{fs}" for name in (*PHASES, "baselines") for fs in FEATURE_SETS
    ]
    statuses = {run_id: _result(study, run_id)["status"] for run_id in expected}
    assert statuses == {run_id: "ok" for run_id in expected}


def test_executed_notebooks_have_no_errors(study: dict):
    executed = sorted((study["root"] / "notebooks").glob("*.ipynb"))
    # data and comparison, plus 5 phases and the backtest for each of the 2 feature sets.
    assert len(executed) == 14
    for path in executed:
        notebook = nbformat.read(path, as_version=4)
        errors = [
            output
            for cell in notebook.cells
            if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if output.output_type == "error"
        ]
        assert errors == [], path.name


def test_every_model_scored_on_same_rows(study: dict):
    hashes = {}
    for fs in FEATURE_SETS:
        for name in (*PHASES, "baselines"):
            hashes[f"{name}.{fs}"] = _result(study, f"{name}.{fs}")["test_rows"]["sha256"]
    assert len(set(hashes.values())) == 1, hashes
    assert _result(study, "phase1.seed")["test_rows"]["count"] > 200


def test_phase1_mean_only_intervals_undercover(study: dict):
    for fs in FEATURE_SETS:
        result = _result(study, f"phase1.{fs}")
        mean_only = result["metrics_mean_only"]
        predictive = result["metrics"]
        # The study's central finding: the network mean alone covers far too few outcomes.
        assert mean_only["coverage_90"] < 0.5
        assert predictive["coverage_90"] > 0.75
        assert mean_only["width_90_mean"] < predictive["width_90_mean"] / 3


def test_phase2_1_median_forecast_is_sane(study: dict):
    # The study's back-transformed mean gave an MAE of 383.7 yards; the median must not.
    for fs in FEATURE_SETS:
        metrics = _result(study, f"phase2_1.{fs}")["metrics"]
        assert 8.0 < metrics["mae"] < 35.0
        assert metrics["rmse"] >= metrics["mae"]
        assert 0.6 < metrics["coverage_90"] <= 1.0
        assert metrics["crps"] < metrics["mae"]


def test_gate_weights_sum_to_one(study: dict):
    for fs in FEATURE_SETS:
        weights = _result(study, f"phase2_2.{fs}")["gate_weights"]
        for role in ("train", "test"):
            assert len(weights[role]) == 3
            assert sum(weights[role]) == pytest.approx(1.0, abs=1e-6)


def test_hybrid_calibration_uses_calibration_rows_only(study: dict):
    import pandas as pd

    predictions = study["root"] / "predictions"
    for fs in FEATURE_SETS:
        result = _result(study, f"phase2_3.{fs}")
        if not result["ran"]:
            continue
        assert result["source_run"] in {f"{phase}.{fs}" for phase in PHASES[:3]}
        calibration = pd.read_parquet(predictions / f"{result['source_run']}.calibration.parquet")
        test = pd.read_parquet(predictions / f"phase2_3.{fs}.parquet")
        assert len(calibration) == result["calibration_rows"]
        assert set(calibration["row_id"]).isdisjoint(test["row_id"])
        # The calibration window ends before the test period starts.
        last_calibration = calibration[["season", "week"]].max().tolist()
        first_test = test[["season", "week"]].min().tolist()
        assert tuple(last_calibration) < tuple(first_test)


def test_comparison_file_has_rule_and_every_phase(study: dict):
    comparison = _result(study, "phase2_comparison")
    assert comparison["rule"]["min_coverage_90"] == 0.75
    assert comparison["rule"]["max_mae"] == 19.0
    for fs in FEATURE_SETS:
        entry = comparison["feature_sets"][fs]
        models = entry["models"]
        for phase in PHASES:
            assert f"{phase}.{fs}" in models
        verdicts = entry["recommendation"]["verdicts"]
        recommended = entry["recommendation"]["recommended"]
        if recommended is not None:
            winner = verdicts[f"phase{recommended.replace('.', '_')}"]
            assert winner["succeeds"] is True
            assert winner["converged"] is True


def test_phase_table_numbers_equal_results(study: dict):
    labels = {
        "Phase 1": "phase1",
        "Phase 2.1": "phase2_1",
        "Phase 2.2": "phase2_2",
        "Phase 2.3": "phase2_3",
    }
    for fs in FEATURE_SETS:
        table = (study["root"] / "tables" / f"phase_comparison_{fs}.tex").read_text()
        rows = _data_rows(table)
        assert len(rows) >= 3
        for row in rows:
            metrics = _result(study, f"{labels[row[0]]}.{fs}")["metrics"]
            assert _percent(row[1]) == round(100 * metrics["coverage_50"], 1)
            assert _percent(row[2]) == round(100 * metrics["coverage_90"], 1)
            assert float(row[3]) == round(metrics["width_90_mean"], 1)
            assert float(row[4]) == round(metrics["mae"], 1)
            assert float(row[5]) == round(metrics["crps"], 1)


def test_phase1_table_numbers_equal_results(study: dict):
    for fs in FEATURE_SETS:
        result = _result(study, f"phase1.{fs}")
        table = (study["root"] / "tables" / f"phase1_mean_vs_predictive_{fs}.tex").read_text()
        rows = _data_rows(table)
        assert len(rows) == 5
        for row in rows:
            label = f"{round(_percent(row[0])):d}"
            assert _percent(row[1]) == round(
                100 * result["metrics_mean_only"][f"coverage_{label}"], 1
            )
            assert _percent(row[3]) == round(100 * result["metrics"][f"coverage_{label}"], 1)


def test_latex_bundle_references_exist(study: dict):
    latex_dir = study["root"] / "latex"
    text = (latex_dir / "tables.tex").read_text() + (latex_dir / "figures.tex").read_text()
    references = re.findall(r"\\(?:input|includegraphics)(?:\[[^\]]*\])?\{([^}]+)\}", text)
    assert len(references) > 20
    for reference in references:
        candidates = [latex_dir / reference, latex_dir / f"{reference}.tex"]
        assert any(path.exists() for path in candidates), reference


def test_latex_preview_compiled_when_engine_present(study: dict):
    from shutil import which

    if which("pdflatex") is None and which("latexmk") is None:
        pytest.skip("no LaTeX engine installed; the bundle check above still ran")
    preview = study["root"] / "latex" / "preview.pdf"
    assert preview.exists()
    assert preview.read_bytes()[:5] == b"%PDF-"


def test_figures_have_pdf_and_png(study: dict):
    figures = study["root"] / "figures"
    pdfs = {path.stem for path in figures.glob("*.pdf")}
    pngs = {path.stem for path in figures.glob("*.png")}
    assert pdfs == pngs
    for name in (
        "target_distribution",
        "phase1_mean_vs_predictive-fs_seed",
        "calibration_curves-fs_seed",
        "gate_weights-fs_seed",
        "pit_histograms-fs_seed",
    ):
        assert name in pdfs


def test_second_run_reuses_everything(study: dict):
    again = _run_all("run", "--quiet", data_dir=study["data_dir"], output_root=study["output_root"])
    assert again.returncode == 0, again.stderr[-3000:]
    terminal = again.stdout + again.stderr
    assert "started" not in terminal
    assert terminal.count("reused") >= 12


def test_status_reports_every_run_done(study: dict):
    status = _run_all("status", data_dir=study["data_dir"], output_root=study["output_root"])
    assert status.returncode == 0
    run_prefixes = ("data", "phase", "baselines", "comparison")
    lines = [
        line.strip() for line in status.stdout.splitlines() if line.strip().startswith(run_prefixes)
    ]
    assert len(lines) == 12
    assert all(" done" in line for line in lines), status.stdout


def test_backtest_folds_rows_and_bundle(study: dict):
    tables_tex = (study["root"] / "latex" / "tables.tex").read_text()
    for fs in FEATURE_SETS:
        result = _result(study, f"backtest.{fs}")
        seasons = [str(season) for season in result["seasons"]]
        assert seasons == ["2023", "2024"]
        test_rows = [result["folds"][season]["test_rows"] for season in seasons]
        assert test_rows[0] > 200
        for by_season in result["models"].values():
            counts = [by_season[season]["metrics"]["n_rows"] for season in seasons]
            assert counts == test_rows
            assert by_season["pooled"]["metrics"]["n_rows"] == sum(test_rows)
        # The backtest runs after the comparison and rebuilds the bundle with its own table.
        assert f"tables/backtest_{fs}" in tables_tex


def test_forced_comparison_reruns_alone(study: dict):
    forced = _run_all(
        "run",
        "--force",
        "comparison",
        "--quiet",
        data_dir=study["data_dir"],
        output_root=study["output_root"],
    )
    assert forced.returncode == 0, forced.stdout[-3000:] + forced.stderr[-3000:]
    terminal = forced.stdout + forced.stderr
    assert "comparison: started" in terminal
    assert "phase2_1.seed: started" not in terminal
    assert _result(study, "comparison")["status"] == "ok"
