"""A run's files in `REPORT_BUCKET` (its batch manifest and its report), under the keys `RunContext.key` gives."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sensorops.pipeline.context import REPORT_BUCKET

if TYPE_CHECKING:
    from minio import Minio


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


def signed_url(key: str, days: int = 7) -> str:
    """A link to `key` that works without credentials for `days` days."""
    return _client().presigned_get_object(REPORT_BUCKET, key, expires=timedelta(days=days))
