"""A run's files in `REPORT_BUCKET` (its batch plan and manifest, its report), under the keys `RunContext.key` gives.

Objects are named by their `s3://` URI, never by a pre-signed URL (which carries the access key id): `download`
fetches a copy with the caller's own credentials.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorops import config
from sensorops.errors import UserError
from sensorops.pipeline.context import REPORT_BUCKET

if TYPE_CHECKING:
    from minio import Minio

DOWNLOADS = config.ROOT / "_build" / "reports"
"""Where `download` puts a copy by default (under `_build/`, like every other build output)."""


def _client() -> Minio:
    from sensorops import storage  # the minio SDK: imported when a step runs, not when Airflow parses the DAG

    return storage.client()


def read_json(key: str) -> dict[str, Any] | None:
    """The JSON object stored at `key`, or None if there is none (nor the bucket)."""
    from minio.error import S3Error

    try:
        response = _client().get_object(REPORT_BUCKET, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    try:
        return json.loads(response.read())
    finally:
        response.close()
        response.release_conn()


def put(key: str, data: bytes, content_type: str) -> str:
    """Store `data` at `key` (replacing what was there); its `s3://` URI."""
    _client().put_object(REPORT_BUCKET, key, io.BytesIO(data), len(data), content_type=content_type)
    return f"s3://{REPORT_BUCKET}/{key}"


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise UserError(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def download(uri: str, folder: Path | str = DOWNLOADS) -> Path:
    """Copy the object at `uri` (e.g. a run's `report_uri`) into `folder`; its local path, to open in a browser.

    The report is never shared as a pre-signed link: such a URL carries the access key id, and whoever holds it can
    read the object. Download it with the credentials you have instead.
    """
    bucket, key = parse_uri(uri)
    path = Path(folder) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    _client().fget_object(bucket, key, str(path))
    return path
