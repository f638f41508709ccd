"""`sensorops stream submit|status|cancel`: the PyFlink stream job on the Flink session cluster, one job per channel
profile (`--profile PROFILE.yaml`: its own topics, features and archive, beside the default profile's job)."""

from __future__ import annotations

import argparse
import math
import time

from sensorops import flink, profiles, stream
from sensorops.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="run the stream job (features, windows, dead letters, archive) on Flink")
    actions = p.add_subparsers(dest="action", required=True)

    s = actions.add_parser("submit", help="submit the job, unless a job of that name is already running")
    _name(s)
    own = "(default: the profile's own, `sensorops.profiles.names`)"
    s.add_argument("--source-topic", default="", help=f"events topic {own}")
    s.add_argument("--features-topic", default="", help=own)
    s.add_argument("--aggregates-topic", default="", help=own)
    s.add_argument("--dead-letter-topic", default="", help=own)
    s.add_argument("--archive-path", default="", help=f"S3 prefix of the Parquet archive {own}")
    s.add_argument("--parallelism", type=int, default=1)
    s.add_argument("--checkpoint-interval", type=float, default=10.0, help="seconds between checkpoints (default 10)")
    s.add_argument("--watermark-delay", type=float, default=5.0, help="bounded out-of-orderness, seconds (default 5)")
    s.add_argument(
        "--features-guarantee",
        choices=stream.GUARANTEES,
        default="at-least-once",
        help="delivery guarantee of the features topic (default at-least-once: sub-second latency; "
        "exactly-once: rows visible at checkpoints)",
    )
    s.add_argument("--no-archive", action="store_true", help="do not write the Parquet archive")
    s.add_argument(
        "--fresh", action="store_true", help="ignore the checkpoint of a cancelled run; start from the group offsets"
    )
    s.add_argument("--wait", action="store_true", help="return once all tasks run")
    s.set_defaults(handler=run_submit)

    st = actions.add_parser("status", help="state, restarts, records in and out, checkpoints (exit 1 unless RUNNING)")
    _name(st)
    st.add_argument("--watch", type=float, default=0, help="repeat every N seconds until Ctrl-C")
    st.set_defaults(handler=run_status)

    c = actions.add_parser("cancel", help="cancel the job, keeping its last checkpoint to resume from")
    _name(c)
    c.set_defaults(handler=run_cancel)


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", default=None, metavar="PROFILE.yaml", help="the channel profile's job (default: the default's)"
    )
    p.add_argument("--name", default=None, help=f"job name (default {stream.DEFAULT_JOB_NAME}[-PROFILE])")


def _job_name(args: argparse.Namespace) -> str:
    """The job `--name` names, else the `--profile`'s job (`profiles.per_profile`), else the default profile's."""
    if args.name is not None:
        return args.name
    profile = profiles.load(args.profile) if args.profile else profiles.default()
    return profiles.per_profile(stream.DEFAULT_JOB_NAME, profile)


def _check(args: argparse.Namespace) -> None:
    """Options that the job or the loop would take badly, refused before any service is asked."""
    if args.name is not None and not args.name.strip():
        raise UserError("--name must not be empty")
    limits = {"parallelism": 1, "checkpoint_interval": 0.001, "watermark_delay": 0.0, "watch": 0.0}
    for name, least in limits.items():
        value = getattr(args, name, least)
        if not (value >= least and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')} must be a number of at least {least:g}, got {value}")


def run_submit(args: argparse.Namespace) -> int:
    _check(args)
    cfg = stream.StreamJobConfig(
        profile=args.profile or profiles.DEFAULT_NAME,
        name=args.name or "",
        source_topic=args.source_topic,
        features_topic=args.features_topic,
        aggregates_topic=args.aggregates_topic,
        dead_letter_topic=args.dead_letter_topic,
        archive_path=args.archive_path,
        parallelism=args.parallelism,
        checkpoint_interval_s=args.checkpoint_interval,
        watermark_delay_s=args.watermark_delay,
        features_guarantee=args.features_guarantee,
        archive=not args.no_archive,
    )
    job_id, started = stream.submit(cfg, fresh=args.fresh)
    print(f"{'submitted' if started else 'already running'}: {cfg.name} {job_id}")
    print(f"  reads {cfg.source_topic}; features to {cfg.features_topic}, dead letters to {cfg.dead_letter_topic}")
    if cfg.archive:
        print(f"  archives to {cfg.archive_path}/raw and {cfg.archive_path}/features")
    if args.wait:
        flink.wait_running(job_id)
        print_status(stream.status(job_id=job_id))
    return 0


def print_status(s: flink.JobStatus) -> None:
    out = ", ".join(f"{k} {v:,}" for k, v in sorted(s.records_out.items())) or "-"
    print(f"{s.name}  {s.job_id}  {s.state}  up {s.duration_s:,.0f} s, {s.restarts} restarts")
    print(f"  records in   {s.records_in:,} ({s.records_per_s:,.0f}/s over the run)")
    print(f"  records out  {out}")
    print(f"  checkpoints  {s.checkpoints_completed} completed, latest {s.last_checkpoint or '-'}")


def run_status(args: argparse.Namespace) -> int:
    _check(args)
    while True:
        s = stream.status(_job_name(args))
        print_status(s)
        if not args.watch:
            return 0 if s.healthy else 1  # a restarting job is not well, whatever it will become
        time.sleep(args.watch)


def run_cancel(args: argparse.Namespace) -> int:
    _check(args)
    name = _job_name(args)
    final = stream.cancel(name)
    if final is None:
        print(f"no running job called {name}")
        return 0
    print(f"{final.state}: {final.name} {final.job_id}")
    print(f"  next submit resumes from {final.last_checkpoint or 'the committed Kafka offsets'}")
    return 0
