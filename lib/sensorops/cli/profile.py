"""`sensorops profile`: channel profiles. `infer` proposes one from CSV files; `schema` prints a profile's event
schema; `features` its feature columns (or their Flink SQL)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sensorops import features, profiles
from sensorops.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="channel profiles: infer one from CSV files, show its event schema")
    actions = p.add_subparsers(dest="action", required=True)

    infer = actions.add_parser("infer", help="propose a profile from CSV files (or folders of them)")
    infer.add_argument("files", nargs="+", metavar="FILE", help="CSV files with a header row, or folders of them")
    infer.add_argument("--timestamp-column", required=True, help="column with the event time")
    infer.add_argument("--label-column", default=None, help="column marking anomalies (its encoding is detected)")
    infer.add_argument("--sensor-id-column", default=None, help="column naming the sensor (default: one per file)")
    infer.add_argument("--delimiter", default=None, help="field separator (default: sniffed; '\\t' for tabs)")
    infer.add_argument("--encoding", default="utf-8-sig", help="the files' text encoding (default UTF-8)")
    infer.add_argument("--name", default=None, help="profile name, a slug (default: from the folder or file)")
    infer.add_argument("-o", "--output", required=True, metavar="PROFILE.yaml", help="where to write the profile")
    infer.add_argument("--force", action="store_true", help="overwrite an existing profile file")
    infer.set_defaults(handler=run_infer)

    table = actions.add_parser("features", help="list a profile's feature columns, or print their Flink SQL")
    table.add_argument("profile", nargs="?", default=None, help="PROFILE.yaml (default: the default profile)")
    table.add_argument("--sql", action="store_true", help="print the Flink SQL over a view named events")
    table.set_defaults(handler=run_features)

    schema = actions.add_parser("schema", help="print the JSON Schema of a profile's events")
    schema.add_argument("profile", nargs="?", default=None, help="PROFILE.yaml (default: the default profile)")
    schema.set_defaults(handler=run_schema)


def delimiter_arg(text: str | None) -> str | None:
    """`\\t` and `tab` as a tab; anything else as given."""
    return "\t" if text in ("\\t", "tab") else text


def run_infer(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.exists() and not args.force:
        raise UserError(f"{output} exists; give another -o or --force to overwrite it")
    result = profiles.infer(
        args.files,
        args.timestamp_column,
        label_column=args.label_column,
        sensor_id_column=args.sensor_id_column,
        delimiter=delimiter_arg(args.delimiter),
        name=args.name,
        encoding=args.encoding,
    )
    for note in result.notes:
        print(note)
    profiles.save(result.profile, output)
    channels = len(result.profile.channels)
    print(f"wrote profile {result.profile.name!r} ({channels} channels) to {output}; check its ranges and units")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    profile = profiles.load(args.profile) if args.profile else profiles.default()
    print(json.dumps(profiles.json_schema(profile), indent=2))
    return 0


def run_features(args: argparse.Namespace) -> int:
    feature_set = features.for_profile(profiles.load(args.profile) if args.profile else None)
    if args.sql:
        print(feature_set.flink_sql("events").strip())
        return 0
    inputs = set(feature_set.numeric)
    for column in feature_set.columns:
        print(f"{column}{'  (drifting level: not a model input)' if column in feature_set.drifting else ''}")
    print(f"{len(feature_set.columns)} columns, {len(inputs)} numeric")
    return 0
