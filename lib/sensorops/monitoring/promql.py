"""Prometheus' HTTP API for notebooks and tests: instant queries, a range query as a frame, and the alerts."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import requests

from sensorops.platform.health import prometheus_url

TIMEOUT_S = 10.0


def _get(path: str, url: str | None, **params: Any) -> Any:
    response = requests.get(f"{url or prometheus_url()}/api/v1/{path}", params=params, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()["data"]


def instant(expr: str, url: str | None = None) -> list[dict[str, Any]]:
    """An instant query's result vector: `[{"metric": {labels}, "value": [time, "text"]}, ...]`."""
    return _get("query", url, query=expr)["result"]


def value(expr: str, url: str | None = None) -> float | None:
    """The first value of an instant query, or None while it has none."""
    found = instant(expr, url)
    return float(found[0]["value"][1]) if found else None


def series(expr: str, minutes: float = 15, step_s: float = 15, url: str | None = None) -> pd.DataFrame:
    """A range query over the last `minutes` as a long frame: `time`, `value` and one column per label."""
    end = time.time()
    data = _get("query_range", url, query=expr, start=end - minutes * 60, end=end, step=step_s)
    rows = [
        {"time": pd.Timestamp(float(t), unit="s", tz="UTC"), "value": float(v), **s["metric"]}
        for s in data["result"]
        for t, v in s["values"]
    ]
    return pd.DataFrame(rows, columns=["time", "value"] if not rows else None)


def alerts(name: str | None = None, state: str | None = None, url: str | None = None) -> list[dict[str, Any]]:
    """The alerts Prometheus holds (pending or firing), optionally of one name and state."""
    found = _get("alerts", url)["alerts"]
    return [
        a
        for a in found
        if (name is None or a["labels"].get("alertname") == name) and (state is None or a["state"] == state)
    ]
