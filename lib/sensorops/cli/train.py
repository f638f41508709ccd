"""`sensorops train`: train the anomaly detectors on a range of the feature archive (or, with `--profile`, on CSV
files of any profile), track them in MLflow, and move the `champion` alias when the best one beats the current
champion."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from sensorops import archive, config, features, platform, profiles, registry, training
from sensorops.errors import UserError

MAX_RANGE = timedelta(days=366 * 30)
"""Longer than any archive can be (event times start in 2000), and short enough to list its hours."""
PROFILE_MODELS = "all,detectors"
"""What `--profile` trains by default: the four models and the detectors of normal behaviour."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train, compare and register anomaly detectors from the S3 archive or CSV files")
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="with --profile: CSV files or folders to train on, read by the profile"
    )
    p.add_argument("--profile", default=None, metavar="PROFILE.yaml", help="the channel profile (default: the default)")
    p.add_argument("--start", default=None, help="first hour of the range: YYYY-MM-DD or YYYY-MM-DDTHH (UTC)")
    p.add_argument(
        "--end", default=None, help="last hour, inclusive; a bare date means its last hour (default: --start)"
    )
    p.add_argument(
        "--models",
        default=None,
        help=f"comma-separated, from {','.join([*training.MODELS, *training.DETECTORS])}, or all and detectors "
        f"(default all; {PROFILE_MODELS} with --profile)",
    )
    p.add_argument(
        "--train-fraction", type=float, default=0.7, help="earlier share of the time range to train on (default 0.7)"
    )
    p.add_argument(
        "--split",
        choices=("time", "sensor"),
        default="time",
        help="time: one cutoff for all; sensor: the first part of each sensor's readings trains (default time)",
    )
    p.add_argument(
        "--inputs",
        choices=training.INPUT_KINDS,
        default="all",
        help="with --profile: every feature, the deviations only (no channel's levels), or the smoothed window "
        "statistics only (default all)",
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
    p.add_argument(
        "--prefix",
        default=None,
        help="key prefix of the feature archive (default: the profile's, where its stream job archives: features, "
        "or profiles/NAME/features)",
    )
    p.add_argument("--experiment", default=None, help=f"MLflow experiment (default {registry.EXPERIMENT}[-PROFILE])")
    p.add_argument("--model-name", default=None, help=f"registered model (default {registry.MODEL_NAME}[-PROFILE])")
    p.add_argument("--no-register", action="store_true", help="log the runs but leave the registry alone")
    p.add_argument("--no-mlflow", action="store_true", help="train and print only: no runs, no registry")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.set_defaults(handler=run)


@dataclass(frozen=True)
class Table:
    """The feature table to train on and where it came from (archive partitions, or files)."""

    frame: pd.DataFrame
    sources: list[str]
    said: str


def _check(args: argparse.Namespace) -> None:
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    if args.n_jobs < 1:
        raise UserError(f"--n-jobs must be at least 1, got {args.n_jobs}")
    if not 0 < args.train_fraction < 1:
        raise UserError(f"--train-fraction must be between 0 and 1, got {args.train_fraction}")
    if args.max_search_rows < 0:
        raise UserError(f"--max-search-rows must be 0 (all) or more, got {args.max_search_rows}")
    if args.files and not args.profile:
        raise UserError("CSV files are read through a profile: give --profile PROFILE.yaml (`sensorops profile infer`)")
    if args.files and args.start:
        raise UserError("give either CSV files or an archive range (--start), not both")
    if not args.files and not args.start:
        raise UserError("give the range of the archive to train on (--start) or, with --profile, CSV files")
    if args.start:
        first, last = archive.parse_hour(args.start), archive.parse_hour(args.end or args.start, end=True)
        if last < first:  # bad dates fail here, before any service is asked
            archive.hours(first, last)  # says that the range ends before it starts
        if last - first > MAX_RANGE:
            raise UserError(
                f"the range {args.start} .. {args.end} is longer than {MAX_RANGE.days:,} days; ask for less"
            )


def _from_files(args: argparse.Namespace, feature_set: features.FeatureSet) -> Table:
    from sensorops import replay

    started = time.perf_counter()
    data = replay.read_profile(args.files, feature_set.profile)
    if data.events.empty:
        raise UserError(f"none of the {data.rows:,} rows of {', '.join(args.files)} is a valid reading")
    frame = feature_set.compute(data.events)
    sources = sorted(set(data.events["file"]))
    said = f"read {len(frame):,} readings of {len(sources)} files in {time.perf_counter() - started:.1f} s"
    if data.bad_rows:
        said += f"; {len(data.bad_rows):,} rows left out, first: {data.bad_rows[0].file} {data.bad_rows[0]}"
    return Table(frame, sources, said)


def _from_archive(args: argparse.Namespace, feature_set: features.FeatureSet) -> Table:
    started = time.perf_counter()
    prefix = profiles.features_prefix(feature_set.profile) if args.prefix is None else args.prefix
    location = f"s3://{args.bucket}/{prefix.strip('/')}"
    try:
        data = archive.read(location, args.start, args.end or args.start)
    except UserError:
        platform.require("s3", timeout=10)  # if S3 is the cause, say so and name the fix
        raise
    if data.frame.empty:
        submit = "sensorops stream submit" + ("" if feature_set.profile.is_default else f" --profile {args.profile}")
        raise UserError(
            f"no archived data in {location} from {args.start} to {args.end or args.start} "
            f"(is the stream job archiving? `{submit}`)"
        )
    said = (
        f"read {len(data.frame):,} rows from {len(data.partitions)} partitions ({data.files} files) "
        f"of {location} in {time.perf_counter() - started:.1f} s"
    )
    return Table(data.frame, list(data.partitions), said)


def run(args: argparse.Namespace) -> int:
    profile = profiles.load(args.profile) if args.profile else profiles.default()
    models = training.model_names(args.models or (PROFILE_MODELS if args.profile else "all"))
    _check(args)
    feature_set = features.for_profile(profile)
    if not args.no_mlflow:
        platform.require("mlflow", timeout=10)  # before minutes of training, not after

    table = _from_files(args, feature_set) if args.files else _from_archive(args, feature_set)
    print(table.said)
    inputs = training.Inputs.for_features(feature_set, args.inputs)
    cut = training.sensor_split if args.split == "sensor" else training.time_split
    split = cut(table.frame, train_fraction=args.train_fraction, inputs=inputs)
    where = "each sensor's first part" if split.per_sensor else f"split at {split.cutoff}"
    print(f"\n{where}: class balance\n{split.balance().to_string()}\n")

    started = time.perf_counter()
    results = training.train_models(
        split,
        models,
        n_folds=args.folds,
        n_jobs=args.n_jobs,
        max_search_rows=args.max_search_rows or None,
        seed=args.seed,
        inputs=inputs,
    )
    train_seconds = time.perf_counter() - started
    zscores = [f"{prefix}_zscore" for prefix in feature_set.channels.values()]
    baselines = training.baselines(split.test, zscore_columns=zscores)
    comparison = training.comparison(results, baselines)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(f"\ntest period {split.test_period[0]} .. {split.test_period[1]}\n{comparison.to_string()}")
    print(f"\nsearch and refit of {len(results)} models: {train_seconds:.1f} s (n_jobs={args.n_jobs})")

    if args.no_mlflow:
        return 0
    experiment = args.experiment or profiles.per_profile(registry.EXPERIMENT, profile)
    tags = {"sensorops.profile": profile.name, "sensorops.split": args.split}
    session = registry.log_session(results, split, table.sources, baselines, experiment=experiment, tags=tags)
    print(f"\nMLflow: {registry.run_url(session.run_id)}")
    for name, logged in session.models.items():
        print(f"  {name:<24} {registry.run_url(logged.run_id)}")
    if args.no_register:
        return 0
    best = training.best_result(results)
    model_name = args.model_name or profiles.per_profile(registry.MODEL_NAME, profile)
    outcome = registry.register_and_promote(session.models[best.name], split.test, model_name=model_name)
    verdict = "is the new champion" if outcome.promoted else "stays a challenger"
    print(f"\n{outcome.model_name} version {outcome.version} ({best.name}) {verdict}: {outcome.reason}")
    return 0
