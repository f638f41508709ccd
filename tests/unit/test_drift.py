"""Drift and data quality: the scores on known inputs, a firmware update detected where it is, the HTML report,
and the report logged to a real (file-based) MLflow backend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import stats

from sensorops import drifts, events, features, generator
from sensorops.cli import drift as drift_cli
from sensorops.monitoring import drift, drift_data, drift_report

TEMPERATURE_FAMILY = {"temperature", "temperature_vs_fleet", "temp_rolling_mean", "comfort_index"}


def feature_table(**kwargs: object) -> pd.DataFrame:
    frame = generator.simulate(n_sensors=30, duration_s=600, interval_s=1, seed=3, **kwargs)
    return drift.fleet_relative(features.compute_features(events.to_dicts(frame)))


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return feature_table()


@pytest.fixture(scope="module")
def firmware(reference: pd.DataFrame) -> drift.DriftReport:
    shifted = feature_table(drift=drifts.DriftConfig("firmware", size=3.0, share=0.3))
    return drift.compare(reference, shifted)


def test_psi_known_values() -> None:
    ref = np.arange(1000.0)
    assert drift.psi(ref, ref) == 0.0
    eps, top = drift.PSI_EPSILON, 0.1
    expected = 9 * (eps - top) * math.log(eps / top) + (1 - top) * math.log(1 / top)  # all in the top decile
    assert drift.psi(ref, np.full(50, 2000.0)) == pytest.approx(expected)
    half = np.concatenate([np.full(500, -1.0), np.full(500, 2000.0)])  # half in the first, half in the last bin
    assert drift.psi(ref, half) == pytest.approx(8 * (eps - top) * math.log(eps / top) + 2 * 0.4 * math.log(5))
    assert drift.psi(np.append(ref, np.nan), np.append(ref, [np.nan] * 3)) == 0.0  # nulls are not a distribution


def test_ks_and_wasserstein_known_values() -> None:
    ref = np.arange(1000.0)
    report = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": ref + 5.0}), ["x"], decision_columns=["x"])
    row = report.scores.loc["x"]
    assert row["wasserstein"] == pytest.approx(5.0 / ref.std())
    assert row["ks"] == pytest.approx(0.005)
    far = drift.compare(pd.DataFrame({"x": ref}), pd.DataFrame({"x": ref + 5000.0}), ["x"]).scores.loc["x"]
    assert far["ks"] == 1.0 and far["ks_p"] < 1e-100
    rng = np.random.default_rng(1)
    a, b = np.sort(rng.normal(size=3000)), np.sort(rng.normal(0.1, 1.2, size=2000))
    ks, p, w = drift.ks_wasserstein(a, b)
    assert ks == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)
    assert p == pytest.approx(stats.ks_2samp(a, b).pvalue, rel=0.1)


def test_two_samples_of_one_distribution_do_not_drift() -> None:
    rng = np.random.default_rng(0)
    columns = ["a", "b", "c"]
    ref = pd.DataFrame(rng.normal(size=(20_000, 3)), columns=columns)
    cur = pd.DataFrame(rng.normal(size=(5_000, 3)), columns=columns)
    report = drift.compare(ref, cur, columns, decision_columns=columns)
    assert (report.scores["psi"] < 0.02).all() and (report.scores["wasserstein"] < 0.05).all()
    assert not report.drift_detected and report.share_drifted == 0.0


def test_a_window_of_the_same_run_does_not_drift(reference: pd.DataFrame) -> None:
    half = reference["event_time"].median()
    report = drift.compare(reference[reference["event_time"] < half], reference[reference["event_time"] >= half])
    assert not report.drift_detected, report.scores.head()


def test_a_firmware_update_drifts_its_channel_and_its_features_only(firmware: drift.DriftReport) -> None:
    assert TEMPERATURE_FAMILY <= set(firmware.drifted)
    assert set(firmware.drifted) <= TEMPERATURE_FAMILY
    untouched = [c for c in firmware.scores.index if c.startswith(("humidity", "pressure"))]
    assert len(untouched) == 12 and (firmware.scores.loc[untouched, "psi"] < 0.01).all()
    assert firmware.drift_detected  # through temperature_vs_fleet, a stable column
    summary = firmware.summary()
    assert summary["max_psi"] > drift.PSI_DRIFT and summary["share_drifted"] == pytest.approx(4 / 21)


def test_a_season_shows_in_the_levels_but_decides_only_when_asked(reference: pd.DataFrame) -> None:
    season = feature_table(drift=drifts.DriftConfig("season", size=-3.0))
    report = drift.compare(reference, season)
    assert {"temperature", "humidity"} <= set(report.drifted)
    assert not report.drift_detected  # every sensor moved: nothing relative to the fleet
    assert drift.compare(reference, season, decision_columns=drift.DRIFT_COLUMNS).drift_detected


def test_too_few_rows_are_not_scored() -> None:
    report = drift.compare(pd.DataFrame({"x": np.arange(500.0)}), pd.DataFrame({"x": np.arange(50.0)}), ["x"])
    assert math.isnan(report.scores.at["x", "psi"]) and not report.scores.at["x", "drifted"]


def test_quality_counts_nulls_and_readings_outside_the_schema() -> None:
    frame = pd.DataFrame({"temperature": [20.0, 200.0, None, 21.0], "humidity": [40.0, 50.0, 101.0, -1.0]})
    q = drift.quality(frame)
    assert q.at["temperature", "null_rate"] == 0.25 and q.at["temperature", "out_of_range_rate"] == 0.25
    assert q.at["humidity", "out_of_range_rate"] == 0.5
    assert q.at["pressure", "null_rate"] == 1.0  # a missing channel is all nulls


def test_html_report_is_self_contained(firmware: drift.DriftReport, tmp_path: Path) -> None:
    path = drift_report.write_html(firmware, tmp_path / "drift.html", context={"window": "test"})
    text = path.read_text()
    for column in firmware.scores.index:
        assert column in text
    assert "DRIFT DETECTED" in text and "Most drifted columns" in text
    assert "<script src=" not in text and "Plotly.newPlot" in text  # plotly.js inline, no CDN


def test_report_is_logged_to_a_real_mlflow_backend(firmware: drift.DriftReport, tmp_path: Path, monkeypatch) -> None:
    # Through the environment, which monkeypatch restores: `mlflow.set_tracking_uri` would also set
    # MLFLOW_TRACKING_URI for the rest of the process (the integration tests that follow in it).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()  # artifacts in tmp_path too, not in ./mlruns
    client.create_experiment("drift-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = drift_report.log_to_mlflow(firmware, experiment="drift-test", params={"window": "a .. b"})
    run = client.get_run(run_id)
    artifacts = {a.path for a in client.list_artifacts(run_id, "drift")}
    assert run.data.metrics["drift.drift_detected"] == 1.0
    assert run.data.metrics["drift.psi.temperature_vs_fleet"] == pytest.approx(
        firmware.scores.at["temperature_vs_fleet", "psi"]
    )
    assert "quality.null_rate.humidity" in run.data.metrics
    assert run.data.params["window"] == "a .. b" and run.data.tags["sensorops.drift_detected"] == "true"
    assert {"drift/report.html", "drift/scores.csv", "drift/quality.csv"} <= artifacts


def test_reading_a_window_from_a_local_archive(reference: pd.DataFrame, tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    from sensorops import archive

    fs = pafs.LocalFileSystem()
    archive.write(reference[features.FEATURE_COLUMNS], str(tmp_path / "features"), filesystem=fs)
    end = reference["event_time"].max()
    window = drift_data.recent_window(str(tmp_path / "features"), 5, end, filesystem=fs)
    assert window.frame["event_time"].min() >= end - pd.Timedelta(minutes=5)
    assert set(drift.FLEET_COLUMNS) <= set(window.frame.columns)
    with pytest.raises(drift_data.UserError, match="no archived rows"):
        drift_data.recent_window(str(tmp_path / "features"), 5, "2020-01-01T00:00", filesystem=fs)


def test_the_printed_table_names_the_top_columns(firmware: drift.DriftReport) -> None:
    text = drift_cli.format_table(firmware, top=3)
    assert firmware.scores.index[0] in text and "null_rate" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["drift", "check", "--minutes", "0"], "--minutes must be positive"),
        (["drift", "check", "--reference-start", "2026-11-27"], "give both --reference-start and --reference-end"),
        (["drift", "check", "--end", "someday"], "not a timestamp: 'someday'"),
        (["drift", "check", "--threshold", "-1"], "--threshold must be a positive PSI"),
    ],
)
def test_bad_drift_arguments_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    from sensorops import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
