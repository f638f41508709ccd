"""S3 access through the S3 API alone, so any endpoint works: the local SeaweedFS, a cluster's, or your MinIO."""

from __future__ import annotations

import logging

import requests
import urllib3
from minio import Minio

from sensorops import config

log = logging.getLogger(__name__)


def client(settings: config.Settings | None = None, timeout: float = 30.0) -> Minio:
    """A minio SDK client for the configured endpoint and keys."""
    s = settings or config.load()
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        s.s3_host,
        access_key=s.aws_access_key_id,
        secret_key=s.aws_secret_access_key,
        secure=s.s3_secure,
        region=s.aws_region,
        http_client=http,
    )


def ensure_buckets(buckets: tuple[str, ...] = config.BUCKETS, settings: config.Settings | None = None) -> list[str]:
    """Create the buckets that are missing; return the ones created."""
    c = client(settings)
    created = []
    for bucket in buckets:
        if not c.bucket_exists(bucket):
            c.make_bucket(bucket)
            created.append(bucket)
    if created:
        log.info("created buckets: %s", ", ".join(created))
    return created


def server_header(settings: config.Settings | None = None, timeout: float = 3.0) -> str:
    """The `Server` header the endpoint sends, e.g. `SeaweedFS 4.48`; empty when it sends none."""
    s = settings or config.load()
    return requests.get(s.aws_endpoint_url, timeout=timeout).headers.get("Server", "")


def pyarrow_filesystem(settings: config.Settings | None = None):
    """A `pyarrow.fs.S3FileSystem` on the same endpoint, for reading and writing Parquet."""
    from pyarrow import fs

    s = settings or config.load()
    return fs.S3FileSystem(
        access_key=s.aws_access_key_id,
        secret_key=s.aws_secret_access_key,
        endpoint_override=s.aws_endpoint_url,
        region=s.aws_region,
        scheme="https" if s.s3_secure else "http",
    )


def delete_prefix(bucket: str, prefix: str, settings: config.Settings | None = None) -> int:
    """Delete every object whose name starts with `prefix` (a folder: it must end with `/`); return how many."""
    from minio.deleteobjects import DeleteObject

    if not prefix.endswith("/") or prefix == "/":
        raise ValueError(f"a prefix to delete names a folder, like runs/1/, not {prefix!r}")
    c = client(settings)
    names = [o.object_name for o in c.list_objects(bucket, prefix=prefix, recursive=True)]
    errors = list(c.remove_objects(bucket, (DeleteObject(n) for n in names)))
    if errors:
        raise RuntimeError(f"could not delete {len(errors)} objects under s3://{bucket}/{prefix}: {errors[0]}")
    return len(names)
