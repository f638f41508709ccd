"""No pre-signed S3 URL anywhere (issue 13): such a URL carries the access key id and lets whoever holds it read the
object, so it must not end up in an MLflow tag, a step's output, a notebook output or the book. Objects are named by
their `s3://` URI and fetched with the reader's own credentials (`pipeline.download`)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sensorops import config, pipeline
from sensorops.errors import UserError
from sensorops.pipeline import store
from sensorops.pipeline.report import report_note

SEARCHED = ("lib", "notebooks", "tools", "deploy")
SIGNING = re.compile(r"presigned|generate_presigned_url|X-Amz-Signature|X-Amz-Credential|AWSAccessKeyId=", re.I)


def sources() -> list[Path]:
    files = []
    for folder in SEARCHED:
        for path in (config.ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".ipynb", ".md", ".yaml", ".yml", ".sh"} and "_build" not in path.parts:
                files.append(path)
    return files


def test_no_code_signs_a_url() -> None:
    found = [str(p.relative_to(config.ROOT)) for p in sources() if SIGNING.search(p.read_text(errors="replace"))]
    assert found == [], f"pre-signed URLs built or shown in {found}"


def test_the_report_step_returns_and_tags_only_the_s3_uri() -> None:
    assert [f.name for f in dataclasses.fields(pipeline.ReportOutput)] == ["report_uri", "bytes"]
    ctx = pipeline.RunContext("manual__x", "2026-11-27T09:00:00Z")
    uri = f"s3://{pipeline.REPORT_BUCKET}/{ctx.key('report.html')}"
    note = report_note(ctx, uri)
    assert uri in note and "http" not in note and not SIGNING.search(note)


def test_download_names_where_the_copy_goes() -> None:
    assert store.parse_uri("s3://reports/dag/run/report.html") == ("reports", "dag/run/report.html")
    assert store.DOWNLOADS == config.ROOT / "_build" / "reports"
    for bad in ("http://host/reports/x", "s3://reports", "s3:///x"):
        with pytest.raises(UserError, match="not an s3://bucket/key URI"):
            store.parse_uri(bad)
