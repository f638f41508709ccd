"""`sensorops monitor exporter`: serve the pipeline's own metrics (lag, champion, live quality, DAG runs) to
Prometheus. `sensorops monitor dashboard`: serve the page that draws them, and Flink's and Kafka's, from Prometheus."""

from __future__ import annotations

import argparse

from sensorops.platform.layout import PORTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="the metrics Prometheus scrapes from the pipeline itself, and the dashboard")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("exporter", help="serve consumer lag, the champion, live quality and DAG runs (foreground)")
    e.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    e.add_argument("--port", type=int, default=PORTS["monitor-exporter"])
    e.add_argument("--interval", type=float, default=15.0, help="seconds between refreshes (default 15)")
    e.set_defaults(handler=run_exporter)
    d = actions.add_parser("dashboard", help="serve the dashboard page, drawn from Prometheus (foreground)")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=PORTS["dashboard"])
    d.add_argument("--prometheus", default=None, help="Prometheus' URL (default: PROMETHEUS_URL, else the platform's)")
    d.set_defaults(handler=run_dashboard)


def run_exporter(args: argparse.Namespace) -> int:
    from sensorops.errors import UserError
    from sensorops.monitoring import exporter

    if args.interval <= 0:
        raise UserError("--interval must be positive")
    try:
        exporter.serve(args.port, host=args.host, interval_s=args.interval)
    except OSError as exc:  # the port is taken
        raise UserError(f"cannot serve metrics on {args.host}:{args.port}: {exc}") from exc
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from sensorops.errors import UserError
    from sensorops.monitoring import dashboard
    from sensorops.platform.health import prometheus_url

    try:
        dashboard.serve(args.prometheus or prometheus_url(), host=args.host, port=args.port)
    except OSError as exc:  # the port is taken
        raise UserError(f"cannot serve the dashboard on {args.host}:{args.port}: {exc}") from exc
    return 0
