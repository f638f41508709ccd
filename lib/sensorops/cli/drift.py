"""`sensorops drift check`: a recent window of the feature archive against the champion's training data (PSI, KS,
Wasserstein, data quality), printed as a table and logged to MLflow as metrics and an HTML report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from sensorops import config, registry
from sensorops.errors import UserError
from sensorops.monitoring import drift, drift_check, drift_data, drift_report


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
        "--decide-on", choices=tuple(drift_check.DECIDE_ON), default="stable",
        help="columns whose drift sets drift_detected: the stationary ones (default) or every column",
    )  # fmt: skip
    c.add_argument("--top", type=int, default=12, help="rows of the printed table (default 12)")
    c.add_argument("--html", default=None, help="also write the HTML report to this file")
    c.add_argument(
        "--summary-file", default=None, help="also write the decision and headline scores as JSON (a pod's XCom file)"
    )
    c.add_argument("--experiment", default=drift_report.EXPERIMENT, help="MLflow experiment")
    c.add_argument("--no-mlflow", action="store_true", help="print only; log nothing")
    c.add_argument(
        "--pushgateway", default=drift_check.default_pushgateway(),
        help="where the scores go for Prometheus (default PUSHGATEWAY_URL or the platform's); '' to skip",
    )  # fmt: skip
    c.set_defaults(handler=run_check)


def _settings(args: argparse.Namespace) -> drift_check.DriftCheck:
    if args.top < 1:
        raise UserError("--top must be at least 1")
    return drift_check.DriftCheck(
        minutes=args.minutes,
        end=args.end,
        location=f"s3://{args.bucket}/{args.prefix.strip('/')}",
        model_name=args.model_name,
        reference_start=args.reference_start,
        reference_end=args.reference_end,
        max_reference_rows=args.max_reference_rows,
        threshold=args.threshold,
        decide_on=args.decide_on,
        experiment=args.experiment,
        mlflow=not args.no_mlflow,
        pushgateway=args.pushgateway,
    )


def format_table(report: drift.DriftReport, top: int = 12) -> str:
    """The `top` columns by PSI and the quality of each channel, as text."""
    shown = report.scores.head(top)[["psi", "ks", "wasserstein", "n_ref", "n_cur", "drifted"]]
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        return f"{shown.to_string()}\n\n{report.quality.to_string()}"


def run_check(args: argparse.Namespace) -> int:
    check = _settings(args)
    outcome = drift_check.run(check)
    window, reference, report = outcome.window, outcome.reference, outcome.report
    if check.reference_start is not None:
        print("reference: an earlier range of the same archive (not the champion's training data)")
    print(f"window {window.start} .. {window.end}: {len(window.frame):,} rows; reference {reference.source} "
          f"({reference.start} .. {reference.end}): {len(reference.frame):,} rows\n")  # fmt: skip
    print(format_table(report, args.top))
    s = report.summary()
    verdict = "DRIFT DETECTED" if s["drift_detected"] else "no drift detected"
    print(f"\n{verdict}: {s['drifted_columns']} of {s['columns']} columns over PSI {check.threshold:g}, "
          f"max PSI {s['max_psi']:.3f} ({s['max_psi_column']}); deciding on the {check.decide_on} columns")  # fmt: skip
    if args.html:
        print(f"report: {drift_report.write_html(report, args.html, context=outcome.params)}")
    if args.summary_file:
        Path(args.summary_file).write_text(json.dumps(outcome.summary()))
    if outcome.mlflow_run_id:
        print(f"MLflow: {registry.run_url(outcome.mlflow_run_id)}")
    if outcome.push_error:
        print(f"warning: {outcome.push_error}", file=sys.stderr)
    return 0
