"""`sensorops drift check`: a recent window of the feature archive against the champion's training data (PSI, KS,
Wasserstein, data quality), printed as a table and logged to MLflow as metrics and an HTML report."""

from __future__ import annotations

import argparse
import math
import os
import sys

import pandas as pd

from sensorops import config, platform, registry
from sensorops.errors import UserError
from sensorops.monitoring import drift, drift_data, drift_report
from sensorops.platform.layout import PORTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drift", help="data drift and quality of the archive's recent window against training data")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("check", help="compare the last minutes of the archive with the champion's training data")
    c.add_argument("--minutes", type=float, default=60.0, help="length of the recent window (default 60)")
    c.add_argument("--end", default=None, help="end of the window, ISO-8601 UTC (default now)")
    c.add_argument("--bucket", default=config.ARCHIVE_BUCKET, help=f"archive bucket (default {config.ARCHIVE_BUCKET})")
    c.add_argument("--prefix", default="features", help="key prefix of the feature archive (default features)")
    c.add_argument("--model-name", default=registry.MODEL_NAME, help="registered model whose champion's data is used")
    c.add_argument(
        "--reference-start", default=None, help="instead of the champion's training data: an earlier range's start"
    )
    c.add_argument("--reference-end", default=None, help="and its end (both ISO-8601 UTC)")
    c.add_argument(
        "--max-reference-rows", type=int, default=drift_data.MAX_REFERENCE_ROWS,
        help=f"sample the reference down to this (default {drift_data.MAX_REFERENCE_ROWS:,})",
    )  # fmt: skip
    c.add_argument(
        "--threshold", type=float, default=drift.PSI_DRIFT, help=f"PSI above which a column drifted ({drift.PSI_DRIFT})"
    )
    c.add_argument(
        "--decide-on", choices=("stable", "all"), default="stable",
        help="columns whose drift sets drift_detected: the stationary ones (default) or every column",
    )  # fmt: skip
    c.add_argument("--top", type=int, default=12, help="rows of the printed table (default 12)")
    c.add_argument("--html", default=None, help="also write the HTML report to this file")
    c.add_argument("--experiment", default=drift_report.EXPERIMENT, help="MLflow experiment")
    c.add_argument("--no-mlflow", action="store_true", help="print only; log nothing")
    c.add_argument(
        "--pushgateway", default=os.environ.get("PUSHGATEWAY_URL", f"127.0.0.1:{PORTS['pushgateway']}"),
        help="where the scores go for Prometheus (default PUSHGATEWAY_URL or the platform's); '' to skip",
    )  # fmt: skip
    c.set_defaults(handler=run_check)


def _check(args: argparse.Namespace) -> None:
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        raise UserError(f"--minutes must be positive, got {args.minutes}")
    if (args.reference_start is None) != (args.reference_end is None):
        raise UserError("give both --reference-start and --reference-end, or neither (the champion's training data)")
    if not (args.threshold > 0 and math.isfinite(args.threshold)):
        raise UserError(f"--threshold must be a positive PSI, got {args.threshold}")
    if args.max_reference_rows < 1 or args.top < 1:
        raise UserError("--max-reference-rows and --top must be at least 1")
    for value in (args.end, args.reference_start, args.reference_end):
        if value is not None:
            drift_data.to_utc(value)  # a bad timestamp fails here, before any service is asked


def format_table(report: drift.DriftReport, top: int = 12) -> str:
    """The `top` columns by PSI and the quality of each channel, as text."""
    shown = report.scores.head(top)[["psi", "ks", "wasserstein", "n_ref", "n_cur", "drifted"]]
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        return f"{shown.to_string()}\n\n{report.quality.to_string()}"


def run_check(args: argparse.Namespace) -> int:
    _check(args)
    location = f"s3://{args.bucket}/{args.prefix.strip('/')}"
    if not args.no_mlflow or args.reference_start is None:
        platform.require("mlflow", timeout=10)
    platform.require("s3", timeout=10)
    window = drift_data.recent_window(location, args.minutes, args.end)
    params = {"window": f"{window.start} .. {window.end}", "window_source": window.source}
    if args.reference_start is None:
        champion = drift_data.champion_training_range(args.model_name)
        ref_location, ref_start, ref_end = champion.location, champion.train_from, champion.train_to
        params.update(champion_version=champion.version, champion_run_id=champion.run_id)
    else:
        ref_location, ref_start, ref_end = location, args.reference_start, args.reference_end
        print("reference: an earlier range of the same archive (not the champion's training data)")
    reference = drift_data.read_range(ref_location, ref_start, ref_end, max_rows=args.max_reference_rows)
    params.update(reference=f"{reference.start} .. {reference.end}", reference_source=reference.source)
    decide = drift.STABLE_COLUMNS if args.decide_on == "stable" else drift.DRIFT_COLUMNS
    report = drift.compare(reference.frame, window.frame, decision_columns=decide, threshold=args.threshold)
    print(f"window {window.start} .. {window.end}: {len(window.frame):,} rows; reference {reference.source} "
          f"({reference.start} .. {reference.end}): {len(reference.frame):,} rows\n")  # fmt: skip
    print(format_table(report, args.top))
    s = report.summary()
    verdict = "DRIFT DETECTED" if s["drift_detected"] else "no drift detected"
    print(f"\n{verdict}: {s['drifted_columns']} of {s['columns']} columns over PSI {args.threshold:g}, "
          f"max PSI {s['max_psi']:.3f} ({s['max_psi_column']}); deciding on the {args.decide_on} columns")  # fmt: skip
    if args.html:
        print(f"report: {drift_report.write_html(report, args.html, context=params)}")
    if not args.no_mlflow:
        registry.client()  # the configured tracking URI
        run_id = drift_report.log_to_mlflow(report, experiment=args.experiment, params=params)
        print(f"MLflow: {registry.run_url(run_id)}")
    if args.pushgateway:
        try:
            drift_report.push(report, args.pushgateway)
        except OSError as exc:  # the check itself is done and logged: say what did not reach Prometheus
            print(f"warning: the scores did not reach the Pushgateway at {args.pushgateway} ({exc})", file=sys.stderr)
    return 0
