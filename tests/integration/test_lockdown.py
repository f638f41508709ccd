"""Issue 13: only the S3 gateway takes requests from clients, and the platform's files are its owner's alone.

Every port the running SeaweedFS listens on is found from the process itself, so a listener that a new version or
flag adds fails here until it is named in `layout.PORTS` and refused like the others.
"""

from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import grpc
import psutil
import pytest
import requests

from sensorops import config, storage
from sensorops.platform import layout
from sensorops.platform.layout import PORTS

pytestmark = pytest.mark.integration

HTTP = ("s3-master", "s3-volume", "s3-filer")
GRPC = {  # a harmless read on each gRPC port, to show that the probe reaches the right service when it may
    "s3-master-grpc": "/master_pb.Seaweed/GetMasterConfiguration",
    "s3-volume-grpc": "/volume_server_pb.VolumeServer/VolumeServerStatus",
    "s3-filer-grpc": "/filer_pb.SeaweedFiler/GetFilerConfiguration",
    "s3-grpc": "",
}
PATHS = ("/", "/buckets/", f"/buckets/{config.ARCHIVE_BUCKET}/", "/dir/assign", "/dir/status", "/vol/status",
         "/cluster/status", "/status", "/ui/index.html", "/metrics", "/3,01637037d6")  # fmt: skip


@pytest.fixture(scope="module")
def weed_ports(settings) -> dict[int, str]:
    """The ports the platform's SeaweedFS listens on, each with its name in PORTS (None for an unknown one)."""
    data = str(Path(settings.home) / "data" / "s3")
    procs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and p.info["cmdline"][0].endswith("weed") and f"-dir={data}" in p.info["cmdline"]
    ]
    assert len(procs) == 1, f"expected one weed process serving {data}, found {len(procs)}"
    listening = {c.laddr.port for c in procs[0].net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    names = {port: name for name, port in PORTS.items()}
    return {port: names.get(port) for port in sorted(listening)}


def test_every_seaweedfs_listener_is_known(weed_ports):
    unknown = sorted(port for port, name in weed_ports.items() if name is None or not name.startswith("s3"))
    assert not unknown, f"SeaweedFS listens on ports the platform does not know (Iceberg? admin?): {unknown}"


@pytest.mark.parametrize("name", HTTP)
def test_http_ports_refuse_requests_without_the_certificate(weed_ports, name, unique):
    port = PORTS[name]
    assert port in weed_ports, f"{name} is not listening on {port}"
    answered = {}
    probes = [("GET", path) for path in PATHS] + [("DELETE", f"/buckets/lockdown-probe-{unique}/?recursive=true")]
    for method, path in probes:  # the DELETE names a bucket that does not exist: today's filer answers 204
        try:
            response = requests.request(method, f"http://127.0.0.1:{port}{path}", timeout=5, allow_redirects=False)
        except requests.RequestException:
            continue
        if response.status_code < 400:
            answered[f"{method} {path}"] = response.status_code
    assert not answered, f"{name} (port {port}) answered without keys: {answered}"
    with warnings.catch_warnings(), pytest.raises(requests.exceptions.SSLError):  # HTTPS, but no client certificate
        warnings.simplefilter("ignore")
        requests.get(f"https://127.0.0.1:{port}/buckets/", timeout=5, verify=False)


@pytest.mark.parametrize("name", sorted(GRPC))
def test_grpc_ports_refuse_clients_without_the_certificate(settings, weed_ports, name):
    port = PORTS[name]
    assert port in weed_ports, f"{name} is not listening on {port}"
    certs = layout.Layout(settings.home).seaweedfs_conf
    ca = (certs / "ca.crt").read_bytes()
    method = GRPC[name] or "/s3_pb.SeaweedS3/Configure"
    without = {"plain": None, "TLS without a certificate": grpc.ssl_channel_credentials(ca)}
    for label, creds in without.items():
        target = f"127.0.0.1:{port}"
        with grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(method)(b"", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, f"{name}, {label}: {refused.value}"
    if GRPC[name]:  # the same call with the platform's certificate succeeds: the refusals above are the lock
        mtls = grpc.ssl_channel_credentials(
            ca, (certs / "seaweedfs.key").read_bytes(), (certs / "seaweedfs.crt").read_bytes()
        )
        with grpc.secure_channel(f"127.0.0.1:{port}", mtls) as channel:
            channel.unary_unary(method)(b"", timeout=5)


def test_s3_refuses_unsigned_requests_and_accepts_signed_ones(settings, unique):
    key = f"smoke/lockdown-{unique}.txt"
    client = storage.client(settings)
    client.put_object(config.ARCHIVE_BUCKET, key, io.BytesIO(b"locked"), 6)
    base = settings.aws_endpoint_url
    assert requests.get(f"{base}/", timeout=5).status_code == 403
    assert requests.get(f"{base}/{config.ARCHIVE_BUCKET}/{key}", timeout=5).status_code == 403
    assert requests.delete(f"{base}/{config.ARCHIVE_BUCKET}/{key}", timeout=5).status_code == 403
    assert client.get_object(config.ARCHIVE_BUCKET, key).read() == b"locked"
    client.remove_object(config.ARCHIVE_BUCKET, key)


def _private(path: Path) -> bool:
    return not stat.S_IMODE(path.stat().st_mode) & 0o077


def test_platform_home_and_secrets_are_owner_only(settings):
    lay = layout.Layout(settings.home)
    assert _private(lay.home), f"{lay.home} is readable by others"
    secrets = [
        config.ENV_FILE,
        lay.supervisor_conf,
        lay.flink_conf / "config.yaml",
        lay.home / "kafka" / "server.properties",
        lay.airflow_home / "passwords.json",
        *(lay.seaweedfs_conf / name for name in ("security.toml", "seaweedfs.key", "ca.crt", "seaweedfs.crt")),
    ]
    loose = [str(p) for p in secrets if not _private(p)]
    loose += [str(d) for d in (lay.logs, lay.seaweedfs_conf, lay.home / "data") if not _private(d)]
    assert not loose, f"readable by group or others: {loose}"
