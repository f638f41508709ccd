"""SeaweedFS locked down: only the S3 gateway takes requests from clients, and only signed ones.

`weed mini` always starts an admin server and a maintenance worker (port 23646 and its gRPC port 33646, no flag turns
them off) and, by default, an Iceberg REST catalog (8181) and a Lance namespace server (9101), none of which the
platform uses. The platform runs `weed server` instead: master, volume server, filer and S3 gateway, the same data
layout under `data/s3` (`weed mini` is `weed server` plus those extras), with the catalogs set to port 0 (off).

Behind the S3 gateway, measured on SeaweedFS 4.48 (`deploy/local/seaweedfs/security.toml`):

- every gRPC port (master, volume, filer, S3) requires mutual TLS: a client without the certificate signed by the
  platform's own certificate authority is refused in the handshake;
- the master, volume and filer HTTP ports are HTTPS with client certificates too (plain HTTP gets 400, HTTPS without
  the certificate fails the handshake), and behind that the master and filer HTTP APIs are off (`-disableHttp`) and
  the volume server checks a JWT on every read and write (`[jwt.signing]`, `[jwt.signing.read]`), as the filer would;
- the S3 gateway talks to the others in-process with the same certificate and keys, so boto3, the minio SDK, MLflow
  and Flink's s3a client work unchanged with the access and secret keys.

The JWT keys are generated into `.env` with the other credentials; the certificates are generated once into the
platform's `seaweedfs/` directory (the private key created 600 like every other secret).
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from sensorops import config

JWT_KEYS = (
    "SEAWEEDFS_JWT_WRITE_KEY",
    "SEAWEEDFS_JWT_READ_KEY",
    "SEAWEEDFS_FILER_JWT_WRITE_KEY",
    "SEAWEEDFS_FILER_JWT_READ_KEY",
)
"""The volume server's and the filer's JWT signing keys, generated into `.env` on the first start."""

CA, CERT, KEY = "ca.crt", "seaweedfs.crt", "seaweedfs.key"
VALID_DAYS = 3650


def ensure_certificates(directory: Path) -> None:
    """Create the certificate authority and the one certificate every SeaweedFS part presents, unless still valid."""
    from cryptography import x509  # the `platform` extra (through Airflow): imported only when configuring

    cert = directory / CERT
    if all((directory / name).exists() for name in (CA, CERT, KEY)):
        expires = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
        if expires - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=30):
            return
    ca_pem, cert_pem, key_pem = _issue()
    config.write_private(directory / KEY, key_pem)
    config.write_private(directory / CERT, cert_pem)
    config.write_private(directory / CA, ca_pem)


def _issue() -> tuple[str, str, str]:
    """A new CA and a certificate for 127.0.0.1 it signs, for both server and client use: PEM texts (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def builder(subject: str, issuer: str, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        )

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("sensorops-local-ca", "sensorops-local-ca", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        builder("sensorops-seaweedfs", "sensorops-local-ca", key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return ca.public_bytes(pem).decode(), cert.public_bytes(pem).decode(), key_pem.decode()
