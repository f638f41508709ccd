"""Generate the cluster's Secrets, so that no manifest carries a credential: `python deploy/k8s/make_secrets.py`.

Writes one Kubernetes `List` (JSON, which kubectl reads as YAML) to `_build/k8s-secrets/secrets.json`, readable by
its owner only, then `kubectl apply -f _build/k8s-secrets/secrets.json`. Every password and key is random (the
`secrets` module); nothing is read from the repository. An existing file is kept (`--force` writes a new one: the
databases keep the passwords they were created with, so rotate those with the database, not by regenerating).

Per namespace, the Secrets the manifests reference:
- sensorops-data: `seaweedfs-s3-config` (SeaweedFS identities: one S3 key pair per workload, each allowed its
  buckets only), `flink-s3` (the Flink jobs' key pair) and `pipeline-steps-kafka` (the step pods' Kafka password,
  which the User Operator sets; the jobs' Kafka passwords are the User Operator's own);
- sensorops-ml: `mlflow-db` (Postgres and the backend store URI) and `mlflow-s3` (MLflow's key pair);
- sensorops-orchestration: `airflow-db`, `airflow-secrets` (database URL, JWT secret, Fernet key), `airflow-users`
  (the `admin` password) and `sensorops-settings` (the DAG's step pods: the standard variables, with the pipeline's
  key pair and Kafka user).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "_build" / "k8s-secrets" / "secrets.json"
DATA, ML, ORCH = "sensorops-data", "sensorops-ml", "sensorops-orchestration"
S3 = f"http://seaweedfs-s3.{DATA}.svc:8333"

# What each S3 identity may touch (SeaweedFS actions, per bucket).
S3_GRANTS = {
    "flink": {"flink-checkpoints": "rwl", "sensor-archive": "rwl", "mlflow-artifacts": "rl"},
    "mlflow": {"mlflow-artifacts": "rwl"},
    "pipeline": {"sensor-archive": "rwla", "pipeline-reports": "rwla", "flink-checkpoints": "rla"},
}
ACTIONS = {"r": "Read", "w": "Write", "l": "List", "a": "Admin"}


def _password(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


def _secret(namespace: str, name: str, values: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "sensorops"}},
        "type": "Opaque",
        "stringData": values,
    }


def secrets_list() -> dict:
    """Every Secret of the deployment, with fresh random values, as a Kubernetes `List`."""
    keys = {name: (f"SO{secrets.token_hex(8).upper()}", _password(30)) for name in S3_GRANTS}
    identities = [
        {
            "name": name,
            "credentials": [{"accessKey": keys[name][0], "secretKey": keys[name][1]}],
            "actions": [f"{ACTIONS[a]}:{bucket}" for bucket, acts in grants.items() for a in acts],
        }
        for name, grants in S3_GRANTS.items()
    ]

    def aws(name: str) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": keys[name][0], "AWS_SECRET_ACCESS_KEY": keys[name][1]}

    mlflow_pw, airflow_pw, kafka_pw = _password(), _password(), _password()
    mlflow_uri = f"postgresql://mlflow:{mlflow_pw}@mlflow-postgres.{ML}.svc:5432/mlflow"
    airflow_url = f"postgresql+psycopg2://airflow:{airflow_pw}@airflow-postgres.{ORCH}.svc:5432/airflow"
    items = [
        _secret(DATA, "seaweedfs-s3-config", {"s3.json": json.dumps({"identities": identities}, indent=1)}),
        _secret(DATA, "flink-s3", aws("flink")),
        _secret(DATA, "pipeline-steps-kafka", {"password": kafka_pw}),
        _secret(
            ML,
            "mlflow-db",
            {
                "POSTGRES_DB": "mlflow",
                "POSTGRES_USER": "mlflow",
                "POSTGRES_PASSWORD": mlflow_pw,
                "MLFLOW_BACKEND_STORE_URI": mlflow_uri,
            },
        ),
        _secret(ML, "mlflow-s3", aws("mlflow")),
        _secret(
            ORCH, "airflow-db", {"POSTGRES_DB": "airflow", "POSTGRES_USER": "airflow", "POSTGRES_PASSWORD": airflow_pw}
        ),
        _secret(
            ORCH,
            "airflow-secrets",
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": _password(32),
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            },
        ),
        _secret(ORCH, "airflow-users", {"passwords.json": json.dumps({"admin": _password(18)})}),
        _secret(
            ORCH,
            "sensorops-settings",
            {
                "KAFKA_BOOTSTRAP_SERVERS": f"sensorops-kafka-bootstrap.{DATA}.svc:9094",
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "pipeline-steps",
                "KAFKA_SASL_PASSWORD": kafka_pw,
                "AWS_ENDPOINT_URL": S3,
                "AWS_DEFAULT_REGION": "us-east-1",
                **aws("pipeline"),
                "MLFLOW_TRACKING_URI": f"http://mlflow.{ML}.svc:5000",
                # The Flink Kubernetes Operator runs each job in its own cluster; the steps only check them.
                "SENSOROPS_FLINK_JOBS": "operator",
                "FLINK_REST_URL": f"http://sensor-stream-rest.{DATA}.svc:8081",
                "FLINK_SCORING_REST_URL": f"http://sensor-scoring-rest.{DATA}.svc:8081",
                "SENSOROPS_HOME": "/tmp/sensorops",
            },
        ),
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("--force", action="store_true", help="replace an existing file with new values")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        sys.stderr.write(f"{args.out} exists: kept (apply it, or pass --force for new values)\n")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secrets_list(), f, indent=1)
    sys.stderr.write(f"wrote {args.out}; apply it with: kubectl apply -f {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
