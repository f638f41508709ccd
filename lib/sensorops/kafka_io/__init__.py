"""All of the library's Kafka I/O: topics (`admin`), the producer (`producer`), sending from one process or several
(`send`) and the one reader (`reader`).

kafka_io.produce(events, topic)                      # acks=all, keyed by sensor, a ProduceReport back
kafka_io.read(topic, last=1_000)                     # the newest records, decoded
kafka_io.read(topic, start="end", timeout_s=30)      # what arrives in the next 30 s
"""

from sensorops.kafka_io.admin import DEFAULT_PARTITIONS, delete_topic, ensure_topic
from sensorops.kafka_io.client import (
    BOOTSTRAP_MS,
    MissingTopic,
    client_security,
    java_security,
    quiet_client_logs,
    with_password,
)
from sensorops.kafka_io.producer import (
    DeliveryError,
    EventProducer,
    ProduceReport,
    best_compression,
    producer_settings,
)
from sensorops.kafka_io.reader import Record, consumer, end_offsets, offsets_at, read, records
from sensorops.kafka_io.send import produce

__all__ = [
    "BOOTSTRAP_MS",
    "DEFAULT_PARTITIONS",
    "DeliveryError",
    "EventProducer",
    "MissingTopic",
    "ProduceReport",
    "Record",
    "best_compression",
    "client_security",
    "consumer",
    "delete_topic",
    "end_offsets",
    "offsets_at",
    "ensure_topic",
    "java_security",
    "produce",
    "producer_settings",
    "quiet_client_logs",
    "read",
    "records",
    "with_password",
]
