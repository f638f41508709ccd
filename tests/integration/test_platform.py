"""Each service of the local platform, exercised through its real protocol."""

from __future__ import annotations

import io
import json
from pathlib import Path

import mlflow
import pytest
import requests
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from minio.error import S3Error

from sensorops import config, storage
from sensorops.airflow_api import AirflowClient
from sensorops.platform import local

pytestmark = pytest.mark.integration

JOBS = Path(__file__).parent / "flink_jobs"


def make_topic(settings: config.Settings, name: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    admin.close()
    return name


def consume_all(settings: config.Settings, topic: str, expected: int, timeout_s: float = 30) -> list[dict]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(timeout_s * 1000),
        isolation_level="read_committed",
    )
    values = []
    for record in consumer:
        values.append(json.loads(record.value))
        if len(values) >= expected:
            break
    consumer.close()
    return values


def produce(settings: config.Settings, topic: str, rows: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for row in rows:
        producer.send(topic, json.dumps(row).encode())
    producer.flush()
    producer.close()


def test_kafka_round_trip(settings, unique):
    topic = make_topic(settings, f"smoke-{unique}")
    rows = [{"id": i, "word": f"w{i}"} for i in range(50)]
    produce(settings, topic, rows)
    assert consume_all(settings, topic, len(rows)) == rows


def test_s3_put_list_get_with_generated_keys(settings, unique):
    client = storage.client(settings)
    body = f"hello {unique}".encode()
    client.put_object(config.ARCHIVE_BUCKET, f"smoke/{unique}.txt", io.BytesIO(body), len(body))
    listed = [o.object_name for o in client.list_objects(config.ARCHIVE_BUCKET, prefix="smoke/")]
    assert f"smoke/{unique}.txt" in listed
    assert client.get_object(config.ARCHIVE_BUCKET, f"smoke/{unique}.txt").read() == body


def test_s3_refuses_wrong_keys(settings):
    wrong = config.Settings(**{**settings.__dict__, "aws_secret_access_key": "not-the-secret"})
    with pytest.raises(S3Error) as refused:
        storage.client(wrong, timeout=5).list_buckets()
    assert refused.value.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}


def test_every_bucket_exists(settings):
    client = storage.client(settings)
    assert all(client.bucket_exists(b) for b in config.BUCKETS)


def test_flink_sql_kafka_to_kafka(settings, unique):
    source = make_topic(settings, f"flink-in-{unique}")
    sink = make_topic(settings, f"flink-out-{unique}")
    produce(settings, source, [{"id": i, "word": w} for i, w in enumerate(["kafka", "flink", "s3"])])
    local.flink_cli("run", "-py", str(JOBS / "kafka_to_kafka.py"), source, sink, settings.kafka_bootstrap_servers)
    out = consume_all(settings, sink, 3)
    assert sorted(r["word"] for r in out) == ["FLINK", "KAFKA", "S3"]


def test_flink_writes_to_s3_through_the_plugin(settings, unique):
    prefix = f"smoke/flink-{unique}/"
    local.flink_cli("run", "-py", str(JOBS / "write_s3.py"), f"s3://{config.ARCHIVE_BUCKET}/{prefix}")
    client = storage.client(settings)
    objects = [o.object_name for o in client.list_objects(config.ARCHIVE_BUCKET, prefix=prefix, recursive=True)]
    assert objects, f"the Flink job wrote nothing under s3://{config.ARCHIVE_BUCKET}/{prefix}"
    text = "".join(client.get_object(config.ARCHIVE_BUCKET, name).read().decode() for name in objects)
    assert sorted(text.split()) == ["1,alpha", "2,beta", "3,gamma"]


def test_mlflow_run_artifact_lands_in_s3_and_model_registers(settings, unique, tmp_path):
    from sklearn.dummy import DummyClassifier

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(f"smoke-{unique}")
    note = tmp_path / "note.txt"
    note.write_text(unique)
    with mlflow.start_run(run_name=f"smoke-{unique}") as run:
        mlflow.log_metric("answer", 42)
        mlflow.log_artifact(str(note))
        model = DummyClassifier(strategy="most_frequent").fit([[0], [1]], [0, 0])
        mlflow.sklearn.log_model(model, name="model", registered_model_name=f"smoke-model-{unique}")
    version = mlflow.MlflowClient().get_latest_versions(f"smoke-model-{unique}")[0]
    assert version.run_id == run.info.run_id
    objects = storage.client(settings).list_objects(config.MLFLOW_BUCKET, recursive=True)
    mine = [o.object_name for o in objects if o.object_name.endswith("note.txt") and run.info.run_id in o.object_name]
    assert mine, "the artifact is not in the MLflow bucket"
    assert storage.client(settings).get_object(config.MLFLOW_BUCKET, mine[0]).read().decode() == unique


def test_airflow_runs_a_dag_through_its_api(settings):
    client = AirflowClient(settings)
    client.wait_for_dag("platform_smoke")
    run_id = client.trigger("platform_smoke")
    run = client.wait_for_run("platform_smoke", run_id, timeout_s=300)
    assert run["state"] == "success", run["tasks"]
    assert [t["state"] for t in run["tasks"]] == ["success"]


def test_flink_takes_no_jar_uploads_and_no_foreign_origins(settings):
    upload = requests.post(f"{settings.flink_rest_url}/jars/upload", files={"jarfile": ("x.jar", b"PK")}, timeout=10)
    assert not upload.ok and "POST request not allowed" in upload.text  # web.submit.enable: false
    assert requests.get(f"{settings.flink_rest_url}/jars", timeout=10).status_code == 404  # no jar handlers at all
    answer = requests.get(f"{settings.flink_rest_url}/config", timeout=10)
    assert answer.ok and answer.headers["Access-Control-Allow-Origin"] == settings.flink_rest_url
