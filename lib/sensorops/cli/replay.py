"""`sensorops replay FILE...`: recorded readings into Kafka, in the generator's event schema (one file, `--map`) or
in a channel profile's (`--profile`: several files or folders)."""

from __future__ import annotations

import argparse
import logging
import math

from tqdm import tqdm

from sensorops import config, kafka_io, profiles, replay
from sensorops.cli.profile import delimiter_arg
from sensorops.errors import UserError

SHOW_BAD_ROWS = 20


def _speed(text: str) -> float:
    if text.lower() in ("max", "inf", "0"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"--speed must be a positive factor or 'max', got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay CSV files of recorded readings into Kafka")
    p.add_argument("file", nargs="+", help="CSV file with a header row (with --profile: files or folders)")
    p.add_argument("--profile", default=None, metavar="PROFILE.yaml", help="channel profile describing the files")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help=f"without --profile: which column holds which field; fields: {', '.join(replay.MAPPABLE)} (repeatable)",
    )
    p.add_argument("--timestamp-column", default=None, help="column with the event time (ISO-8601 or epoch s/ms)")
    p.add_argument("--label-column", default=None, help="column marking anomalies (0/1, true/false, or a type name)")
    p.add_argument("--delimiter", default=None, help="field separator (default ','; use '\\t' for tabs)")
    p.add_argument(
        "--encoding", default="utf-8-sig", help="the file's text encoding (default UTF-8, with or without BOM)"
    )
    p.add_argument("--sensor-id", default="replay-001", help="sensor_id when no column is mapped to it")
    p.add_argument("--speed", default="1", help="1 = real time, N = N times faster, max = as fast as possible")
    p.add_argument("--rebase", action="store_true", help="shift timestamps so that the first event is now")
    p.add_argument("--kafka-servers", default=None, help="bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument(
        "--topic",
        default=None,
        help=f"topic (default {config.SENSOR_TOPIC}; a profile's own: {config.SENSOR_TOPIC}.NAME)",
    )
    p.epilog = "Exit code 1 when some rows were not replayed (each is listed with its file and line number)."
    p.set_defaults(handler=run)


def read(args: argparse.Namespace) -> tuple[replay.ReplayData, profiles.Profile | None]:
    """The events the arguments name, and the profile that describes them (None: the default schema by --map)."""
    if args.profile:
        options = {"--timestamp-column": args.timestamp_column, "--label-column": args.label_column}
        given = [o for o, v in {**options, "--delimiter": args.delimiter}.items() if v is not None]
        given += ["--map"] if args.map else []
        if given:
            raise UserError(f"{', '.join(given)} come(s) from the profile; leave them out with --profile")
        profile = profiles.load(args.profile)
        return replay.read_profile(args.file, profile, encoding=args.encoding), profile
    if len(args.file) > 1:
        raise UserError(f"{len(args.file)} files given: replay several files with --profile PROFILE.yaml")
    if not args.timestamp_column:
        raise UserError("give --timestamp-column (or --profile PROFILE.yaml)")
    data = replay.read_csv(
        args.file[0],
        replay.parse_mapping(args.map),
        args.timestamp_column,
        label_column=args.label_column,
        delimiter="," if args.delimiter is None else delimiter_arg(args.delimiter),
        sensor_id=args.sensor_id,
        encoding=args.encoding,
    )
    return data, None


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        kafka_io.quiet_client_logs()
        logging.getLogger(replay.__name__).setLevel(logging.ERROR)  # the rows that do not parse are printed below
    args.speed = _speed(args.speed)
    data, profile = read(args)
    source = args.file[0] if len(args.file) == 1 else f"{len(args.file)} paths"
    for bad in data.bad_rows[:SHOW_BAD_ROWS]:
        print(f"{bad.file or args.file[0]}: skipped {bad}")
    if len(data.bad_rows) > SHOW_BAD_ROWS:
        print(f"{source}: ... and {len(data.bad_rows) - SHOW_BAD_ROWS} more rows that do not parse")
    if data.events.empty:
        raise UserError(f"no row of {source} could be replayed ({len(data.bad_rows)} rows do not parse)")
    if args.topic is not None:
        topic = args.topic
    else:
        topic = profiles.sensor_topic(profile) if profile else config.SENSOR_TOPIC
    servers = args.kafka_servers or config.load().kafka_bootstrap_servers
    speed = "as fast as possible" if math.isinf(args.speed) else f"at {args.speed:g}x real time"
    print(f"replaying {len(data.events):,} of {data.rows:,} rows {speed} to topic {topic!r} at {servers}")
    with tqdm(total=len(data.events), unit="ev", disable=None, leave=False) as bar:

        def batches():
            for b in replay.paced(data.events, args.speed, rebase=args.rebase):
                bar.update(len(b))
                yield profiles.serialize(b, profile) if profile else b

        report = kafka_io.produce(batches(), topic, servers, raise_on_failure=False)
    print(report)
    if data.bad_rows:
        print(f"{len(data.bad_rows)} rows of {source} were not replayed (see the lines above)")
    if not report.ok:
        raise kafka_io.DeliveryError(report, servers, kafka_io.producer_settings()["delivery_timeout_ms"] / 1000)
    return 1 if data.bad_rows else 0
