"""`sensorops train`: train the anomaly detectors on a range of the feature archive, track them in MLflow, and
move the `champion` alias when the best one beats the current champion."""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

import pandas as pd

from sensorops import archive, config, platform, registry, training
from sensorops.errors import UserError

MAX_RANGE = timedelta(days=366 * 30)
"""Longer than any archive can be (event times start in 2000), and short enough to list its hours."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train, compare and register anomaly detectors from the S3 archive")
    p.add_argument("--start", required=True, help="first hour of the range: YYYY-MM-DD or YYYY-MM-DDTHH (UTC)")
    p.add_argument(
        "--end", default=None, help="last hour, inclusive; a bare date means its last hour (default: --start)"
    )
    p.add_argument("--models", default="all", help=f"comma-separated, from {','.join(training.MODELS)} (default all)")
    p.add_argument(
        "--train-fraction", type=float, default=0.7, help="earlier share of the time range to train on (default 0.7)"
    )
    p.add_argument("--folds", type=int, default=3, help="time-ordered folds of the grid search (default 3)")
    p.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="parallel fits (default: all cores)")
    p.add_argument(
        "--max-search-rows",
        type=int,
        default=training.DEFAULT_MAX_SEARCH_ROWS,
        help=f"rows the grid search sees, 0 for all (default {training.DEFAULT_MAX_SEARCH_ROWS:,}); "
        "the best model is refitted on all",
    )
    p.add_argument("--bucket", default=config.ARCHIVE_BUCKET, help=f"archive bucket (default {config.ARCHIVE_BUCKET})")
    p.add_argument("--prefix", default="features", help="key prefix of the feature archive (default features)")
    p.add_argument(
        "--experiment", default=registry.EXPERIMENT, help=f"MLflow experiment (default {registry.EXPERIMENT})"
    )
    p.add_argument(
        "--model-name", default=registry.MODEL_NAME, help=f"registered model (default {registry.MODEL_NAME})"
    )
    p.add_argument("--no-register", action="store_true", help="log the runs but leave the registry alone")
    p.add_argument("--no-mlflow", action="store_true", help="train and print only: no runs, no registry")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    models = training.model_names(args.models)
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    if args.n_jobs < 1:
        raise UserError(f"--n-jobs must be at least 1, got {args.n_jobs}")
    if not 0 < args.train_fraction < 1:
        raise UserError(f"--train-fraction must be between 0 and 1, got {args.train_fraction}")
    if args.max_search_rows < 0:
        raise UserError(f"--max-search-rows must be 0 (all) or more, got {args.max_search_rows}")
    first, last = archive.parse_hour(args.start), archive.parse_hour(args.end or args.start, end=True)
    if last < first:  # bad dates fail here, before any service is asked
        archive.hours(first, last)  # says that the range ends before it starts
    if last - first > MAX_RANGE:
        raise UserError(f"the range {args.start} .. {args.end} is longer than {MAX_RANGE.days:,} days; ask for less")
    if not args.no_mlflow:
        platform.require("mlflow", timeout=10)  # before minutes of training, not after

    started = time.perf_counter()
    location = f"s3://{args.bucket}/{args.prefix.strip('/')}"
    try:
        data = archive.read(location, args.start, args.end or args.start)
    except UserError:
        platform.require("s3", timeout=10)  # if S3 is the cause, say so and name the fix
        raise
    load_seconds = time.perf_counter() - started
    if data.frame.empty:
        raise UserError(
            f"no archived data in {location} from {args.start} to {args.end or args.start} "
            "(is the stream job archiving? see notebook 02)"
        )
    print(
        f"read {len(data.frame):,} rows from {len(data.partitions)} partitions ({data.files} files) "
        f"of {location} in {load_seconds:.1f} s"
    )

    split = training.time_split(data.frame, train_fraction=args.train_fraction)
    print(f"\nsplit at {split.cutoff}: class balance\n{split.balance().to_string()}\n")

    started = time.perf_counter()
    results = training.train_models(
        split,
        models,
        n_folds=args.folds,
        n_jobs=args.n_jobs,
        max_search_rows=args.max_search_rows or None,
        seed=args.seed,
    )
    train_seconds = time.perf_counter() - started
    baselines = training.baselines(split.test)
    table = training.comparison(results, baselines)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(f"\ntest period {split.test_period[0]} .. {split.test_period[1]}\n{table.to_string()}")
    print(f"\nsearch and refit of {len(results)} models: {train_seconds:.1f} s (n_jobs={args.n_jobs})")

    if args.no_mlflow:
        return 0
    session = registry.log_session(results, split, data.partitions, baselines, experiment=args.experiment)
    print(f"\nMLflow: {registry.run_url(session.run_id)}")
    for name, logged in session.models.items():
        print(f"  {name:<20} {registry.run_url(logged.run_id)}")
    if args.no_register:
        return 0
    best = training.best_result(results)
    outcome = registry.register_and_promote(session.models[best.name], split.test, model_name=args.model_name)
    verdict = "is the new champion" if outcome.promoted else "stays a challenger"
    print(f"\n{outcome.model_name} version {outcome.version} ({best.name}) {verdict}: {outcome.reason}")
    return 0
