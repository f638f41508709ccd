"""The embedded platform: real services as supervised local processes under `SENSOROPS_HOME` (default `.platform/`).

`up` installs what is missing (jars from Maven Central through `mvn`), generates credentials into the git-ignored
`.env` on the first start, renders the configs from `deploy/local/`, starts supervisor and waits until every
service answers its protocol. `down` stops the whole process tree; the data stays until `clean`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from string import Template

from sensorops import config, storage
from sensorops.errors import UserError
from sensorops.platform import health
from sensorops.versions import versions

log = logging.getLogger(__name__)

DEPLOY = config.ROOT / "deploy" / "local"
VENV = Path(sys.prefix)

PORTS = {
    "kafka": 9092,
    "kafka-controller": 9093,
    "s3": 8333,
    "s3-volume": 8340,
    "s3-master": 9333,
    "s3-filer": 8888,
    "flink": 8081,
    "flink-rpc": 6123,
    "mlflow": 5000,
    "airflow": 8080,
}
PROGRAMS = {
    "s3": ("s3",),
    "kafka": ("kafka",),
    "flink": ("flink-jobmanager", "flink-taskmanager"),
    "mlflow": ("mlflow",),
    "airflow": ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"),
}
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
    def flink_lib(self) -> Path:
        return self.home / "flink" / "lib"

    @property
    def flink_plugins(self) -> Path:
        return self.home / "flink" / "plugins"

    @property
    def flink_conf(self) -> Path:
        return self.home / "flink" / "conf"

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
    return Layout(config.load().home)


def flink_home() -> Path:
    """The Flink distribution inside the PyFlink package."""
    import pyflink

    return Path(pyflink.__file__).parent


def flink_env() -> dict[str, str]:
    """Environment for the Flink client (`bin/flink run`) so that it talks to the session cluster."""
    lay = layout()
    return {
        **os.environ,
        **config.export_environment(),
        "FLINK_CONF_DIR": str(lay.flink_conf),
        "FLINK_LIB_DIR": str(lay.flink_lib),
        "FLINK_PLUGINS_DIR": str(lay.flink_plugins),
        "FLINK_LOG_DIR": str(lay.logs / "flink"),
    }


def flink_cli(*args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
    """Run Flink's command-line client (`bin/flink ARGS`) against the session cluster; raise with its output on failure."""
    env = flink_env()
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"  # `flink run -py` starts `python` from PATH
    result = subprocess.run([str(flink_home() / "bin" / "flink"), *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        log.debug("flink %s:\n%s", " ".join(args), output)
        raise UserError(f"`flink {args[0]}` failed: {_root_cause(output)} (client logs in {layout().logs / 'flink'})")
    return result


def _root_cause(output: str) -> str:
    """The most telling line of the Flink client's output: the root cause, not the stack."""
    java = [line[2:] for line in output.splitlines() if re.match(r": \S+(Exception|Error)", line)]
    if java:
        return java[0]
    causes = [line.strip() for line in output.splitlines() if re.search(r"(Exception|Error)(: |$)", line)]
    causes = [c for c in causes if not c.startswith("at ") and "ProgramAbortException" not in c]
    return causes[-1] if causes else (output.strip().splitlines() or ["no output"])[-1]


# --- prerequisites and installation -------------------------------------------------------------------------------


def check_java() -> str:
    """Java 17 or newer must be on PATH; return its version line."""
    java = shutil.which("java")
    if not java:
        raise UserError("Java is not installed: Kafka and Flink need Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless).")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr.splitlines()[0]
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
    }
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # Flink's lib/ already has its SLF4J binding; Kafka needs the API and the binding from the pom.
    excludes = [] if profile == "kafka" else ["-DexcludeGroupIds=org.slf4j"]
    cmd = [mvn, "-q", "-B", "-f", str(DEPLOY / "pom.xml"), "-P", profile, "dependency:copy-dependencies",
           "-DincludeScope=runtime", *excludes, f"-DoutputDirectory={staging}",
           *(f"-D{k}={val}" for k, val in props.items())]
    log.info("fetching %s jars with Maven", profile)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"mvn could not fetch the {profile} jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)


def _stamp(path: Path) -> str:
    return json.dumps(versions(), sort_keys=True) + path.name


def install(lay: Layout) -> None:
    """Fetch whatever jars are missing or were fetched for other versions."""
    jars = lay.home / "jars"
    jars.mkdir(parents=True, exist_ok=True)
    for profile, dest in (("kafka", lay.kafka_jars), ("flink-lib", jars / "flink-lib"), ("flink-s3", jars / "flink-s3")):
        marker = dest / ".versions"
        if marker.exists() and marker.read_text() == _stamp(dest):
            continue
        _mvn_copy(profile, dest)
        marker.write_text(_stamp(dest))
    _assemble_flink(lay, jars)


def _assemble_flink(lay: Layout, jars: Path) -> None:
    """Flink's lib/ = PyFlink's own jars + flink-python + connectors; plugins/ = PyFlink's + the S3 filesystem."""
    home = flink_home()
    shutil.rmtree(lay.flink_lib, ignore_errors=True)
    lay.flink_lib.mkdir(parents=True)
    for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python*.jar"), *(jars / "flink-lib").glob("*.jar")]:
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
    existing = config.read_env_file()
    generated = {
        "AWS_ACCESS_KEY_ID": f"sensorops-{secrets.token_hex(6)}",
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(24),
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": secrets.token_hex(12),
        "AIRFLOW_JWT_SECRET": secrets.token_hex(24),
    }
    missing = {k: v for k, v in generated.items() if not existing.get(k)}
    if missing:
        lines = ["# Generated by `make up` on first start. Git-ignored: never commit it."] if not existing else []
        lines += [f"{k}={v}" for k, v in missing.items()]
        with config.ENV_FILE.open("a") as f:
            f.write("\n".join(lines) + "\n")
        config.ENV_FILE.chmod(0o600)
        log.info("generated credentials into %s", config.ENV_FILE)
    return {**existing, **missing}


def _airflow_env(lay: Layout, creds: dict[str, str]) -> dict[str, str]:
    return {
        **config.export_environment(),
        "AIRFLOW_HOME": str(lay.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(config.ROOT / "deploy" / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
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
    """Write every service's configuration from the templates in deploy/local/."""
    for d in (lay.logs, lay.home / "kafka", lay.flink_conf, lay.airflow_home, lay.home / "data" / "kafka",
              lay.home / "data" / "s3", lay.home / "data" / "mlflow"):
        d.mkdir(parents=True, exist_ok=True)
    s = config.load()
    values = {
        "home": lay.home, "logs": lay.logs, "venv": VENV, "python": VENV / "bin" / "python",
        "flink_home": flink_home(), "kafka_port": PORTS["kafka"], "kafka_controller_port": PORTS["kafka-controller"],
        "s3_port": PORTS["s3"], "s3_volume_port": PORTS["s3-volume"], "flink_port": PORTS["flink"],
        "mlflow_port": PORTS["mlflow"], "airflow_port": PORTS["airflow"],
        "s3_endpoint": s.aws_endpoint_url, "s3_access_key": creds["AWS_ACCESS_KEY_ID"],
        "s3_secret_key": creds["AWS_SECRET_ACCESS_KEY"], "checkpoint_bucket": config.CHECKPOINT_BUCKET,
        "mlflow_bucket": config.MLFLOW_BUCKET, "airflow_env": _supervisor_env(_airflow_env(lay, creds)),
        "flink_java_opts": _flink_default_java_opts(),
    }

    def write(template: Path, target: Path) -> None:
        target.write_text(Template(template.read_text()).substitute(values))
        target.chmod(0o600)

    write(DEPLOY / "kafka" / "server.properties", lay.home / "kafka" / "server.properties")
    write(DEPLOY / "kafka" / "log4j2.properties", lay.home / "kafka" / "log4j2.properties")
    for f in (flink_home() / "conf").iterdir():
        if f.name != "config.yaml":
            shutil.copy(f, lay.flink_conf / f.name)
    write(DEPLOY / "flink" / "config.yaml", lay.flink_conf / "config.yaml")
    write(DEPLOY / "supervisord.conf", lay.supervisor_conf)
    _add_program_defaults(lay)
    passwords = lay.airflow_home / "passwords.json"
    passwords.write_text(json.dumps({creds["AIRFLOW_USERNAME"]: creds["AIRFLOW_PASSWORD"]}))
    passwords.chmod(0o600)


def _flink_default_java_opts() -> str:
    import yaml

    defaults = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text())
    return defaults["env"]["java"]["opts"]["all"]


def _add_program_defaults(lay: Layout) -> None:
    lines = []
    for line in lay.supervisor_conf.read_text().splitlines():
        lines.append(line)
        if line.startswith("[program:"):
            name = line[len("[program:"):-1]
            lines.extend(PROGRAM_DEFAULTS.format(logs=lay.logs, name=name).splitlines())
    lay.supervisor_conf.write_text("\n".join(lines) + "\n")


def format_kafka_storage(lay: Layout) -> None:
    """Format KRaft storage once, on the first start."""
    if (lay.home / "data" / "kafka" / "meta.properties").exists():
        return
    cp = f"{lay.kafka_jars}/*"
    cluster_id = subprocess.run(["java", "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
                                capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["java", "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                    "-c", str(lay.home / "kafka" / "server.properties"), "--standalone"],
                   capture_output=True, text=True, check=True)


def migrate_airflow(lay: Layout, creds: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database (idempotent, needed before its first start)."""
    env = {**os.environ, **_airflow_env(lay, creds)}
    result = subprocess.run([str(VENV / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"`airflow db migrate` failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")


# --- process control ----------------------------------------------------------------------------------------------


def supervisor(lay: Layout) -> xmlrpc.client.ServerProxy | None:
    """A client for the running supervisord, or None when it is not running."""
    if not lay.socket.exists():
        return None
    from supervisor.xmlrpc import SupervisorTransport

    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{lay.socket}"))
    try:
        proxy.supervisor.getState()
    except OSError:
        return None
    return proxy


def ports_in_use() -> dict[int, str]:
    """Platform ports that something is already listening on, with the owning process when it can be told."""
    import psutil

    wanted = set(PORTS.values())
    taken = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in wanted:
            try:
                owner = " ".join(psutil.Process(conn.pid).cmdline()[:3]) if conn.pid else "unknown process"
            except psutil.Error:
                owner = f"pid {conn.pid}"
            taken[conn.laddr.port] = f"{owner} (pid {conn.pid})"
    return taken


def up(timeout: float = 300.0) -> dict[str, health.Health]:
    """Install, configure and start everything; wait until every service is healthy. Running it twice is a no-op."""
    lay = layout()
    check_java()
    if supervisor(lay) is None:
        taken = ports_in_use()
        if taken:
            service = {port: name for name, port in PORTS.items()}
            detail = "; ".join(f"port {p} ({service[p]}) is used by {who}" for p, who in sorted(taken.items()))
            raise UserError(f"cannot start the platform: {detail}. Stop that process or free the port, then run `make up`.")
        install(lay)
        creds = ensure_credentials()
        render(lay, creds)
        format_kafka_storage(lay)
        migrate_airflow(lay, creds)
        subprocess.run([str(VENV / "bin" / "supervisord"), "-c", str(lay.supervisor_conf)], check=True)
    else:
        _start_stopped(lay)
    results = wait_healthy(timeout)
    storage.ensure_buckets()
    return results


def _start_stopped(lay: Layout) -> None:
    proxy = supervisor(lay)
    for info in proxy.supervisor.getAllProcessInfo():
        if info["statename"] in ("STOPPED", "EXITED", "FATAL"):
            proxy.supervisor.startProcess(f"{info['group']}:{info['name']}", False)


def wait_healthy(timeout: float) -> dict[str, health.Health]:
    """Poll every service until all answer, or fail naming the ones that did not and their log files."""
    lay = layout()
    deadline = time.monotonic() + timeout
    pending = list(health.SERVICES)
    results: dict[str, health.Health] = {}
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            results[name] = health.check(name, timeout=2.0)
            if results[name].ok:
                pending.remove(name)
                log.info("%-8s up at %s", name, results[name].url)
        fatal = [p for p in _program_states(lay).items() if p[1] == "FATAL"]
        if fatal:
            break
        if pending:
            time.sleep(2)
    if pending:
        logs = ", ".join(str(lay.log_file(p)) for name in pending for p in PROGRAMS[name])
        reasons = "; ".join(f"{n}: {results[n].detail}" for n in pending)
        raise UserError(f"{', '.join(pending)} did not become healthy ({reasons}). See {logs}")
    return results


def _program_states(lay: Layout) -> dict[str, str]:
    proxy = supervisor(lay)
    if proxy is None:
        return {}
    return {i["name"]: i["statename"] for i in proxy.supervisor.getAllProcessInfo()}


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    ok: bool
    url: str
    pids: tuple[int, ...]
    detail: str


def status() -> list[ServiceStatus]:
    """Per service: healthy or not, its URL and the PIDs of its processes."""
    lay = layout()
    proxy = supervisor(lay)
    infos = {i["name"]: i for i in proxy.supervisor.getAllProcessInfo()} if proxy else {}
    rows = []
    for name in health.SERVICES:
        h = health.check(name, timeout=2.0)
        pids = tuple(infos[p]["pid"] for p in PROGRAMS[name] if p in infos and infos[p]["pid"])
        rows.append(ServiceStatus(name, h.ok, h.url, pids, h.version if h.ok else h.detail))
    return rows


def down(timeout: float = 90.0) -> bool:
    """Stop every service and supervisor itself; return False when nothing was running."""
    lay = layout()
    proxy = supervisor(lay)
    if proxy is None:
        return False
    pid = proxy.supervisor.getPID()
    proxy.supervisor.stopAllProcesses(True)
    proxy.supervisor.shutdown()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.5)
    lay.socket.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def clean() -> None:
    """Stop everything and delete the platform's data, configs and jars (the `.env` credentials stay)."""
    down()
    shutil.rmtree(layout().home, ignore_errors=True)
