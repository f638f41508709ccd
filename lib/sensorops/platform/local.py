"""The embedded platform: real services as supervised local processes under `SENSOROPS_HOME` (default `.platform/`).

`up` installs what is missing (jars from Maven Central through `mvn`), generates credentials into the git-ignored
`.env` on the first start, renders the configs from `deploy/local/`, starts supervisor and waits until every
service answers its protocol. `down` stops the whole process tree; the data stays until `clean`.

This module runs the processes (and Flink's command-line client against them); `install` prepares and configures
them, `layout` says where everything lives. The names other code reaches here (`local.layout`, `local.check_java`)
stay importable from this module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import xmlrpc.client
from dataclasses import dataclass

from sensorops import config, storage
from sensorops.errors import UserError
from sensorops.platform import health
from sensorops.platform.install import (
    check_java,
    ensure_credentials,
    format_kafka_storage,
    install,
    migrate_airflow,
    render,
)
from sensorops.platform.layout import PORTS, PROGRAMS, VENV, Layout, flink_home, layout
from sensorops.waiting import TimedOut, wait_until

log = logging.getLogger(__name__)

EXTRA_MODULES = ("supervisor", "yaml", "psutil", "airflow")
"""What the `platform` extra brings; the runtime package (a pod's image) does without."""


def require_extra() -> None:
    """Raise, naming the fix, when the `platform` extra is not installed (`pip install .` alone, as in the image)."""
    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"the local platform needs the `platform` extra (missing: {', '.join(missing)}); "
            "install it with `pip install -c requirements.lock -e '.[platform]'`, or run `make up`"
        )


# --- the Flink client ---------------------------------------------------------------------------------------------


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
    """Run Flink's command-line client (`bin/flink ARGS`) on the session cluster; raise with its output on failure."""
    env = flink_env()
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"  # `flink run -py` starts `python` from PATH
    command = [str(flink_home() / "bin" / "flink"), *args]
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=timeout)
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


# --- process control ----------------------------------------------------------------------------------------------


def supervisor(lay: Layout) -> xmlrpc.client.ServerProxy | None:
    """A client for the running supervisord, or None when it is not running."""
    if not lay.socket.exists():
        return None
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{lay.socket}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        proxy.supervisor.getState()
    except OSError:
        return None
    return proxy


def ports_in_use() -> dict[int, str]:
    """Platform ports that something is already listening on, with the owning program and pid when they can be told
    (short: the error lists every port, and one line holds about 1,000 characters)."""
    import psutil

    wanted = set(PORTS.values())
    taken = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in wanted:
            try:
                owner = psutil.Process(conn.pid).name() if conn.pid else "unknown process"
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
            raise UserError(
                f"cannot start the platform: {detail}. Stop that process or free the port, then run `make up`."
            )
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
    pending = list(health.SERVICES)
    results: dict[str, health.Health] = {}

    def settled() -> bool:
        """Every service answers, or a program gave up (FATAL: supervisor stopped restarting it)."""
        for name in list(pending):
            results[name] = health.check(name, timeout=2.0)
            if results[name].ok:
                pending.remove(name)
                log.info("%-8s up at %s", name, results[name].url)
        return not pending or "FATAL" in _program_states(lay).values()

    with contextlib.suppress(TimedOut):  # what is still pending is named below
        wait_until(settled, timeout=timeout, interval=2)
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
    """One service in `status`: healthy or not, where it answers, its processes, its version or what is wrong, and
    the memory its processes hold."""

    service: str
    ok: bool
    url: str
    pids: tuple[int, ...]
    detail: str
    resident_mib: float = 0.0
    """Resident memory of its processes and their children (Flink's Python workers, Airflow's task runners)."""


def resident_mib(pids: tuple[int, ...]) -> float:
    """Resident memory, in MiB, of the processes `pids` and all their descendants."""
    import psutil

    total = 0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
    return total / 2**20


def status() -> list[ServiceStatus]:
    """Per service: healthy or not, its URL, the PIDs of its processes and their resident memory."""
    lay = layout()
    proxy = supervisor(lay)
    infos = {i["name"]: i for i in proxy.supervisor.getAllProcessInfo()} if proxy else {}
    rows = []
    for name in health.SERVICES:
        h = health.check(name, timeout=2.0)
        pids = tuple(infos[p]["pid"] for p in PROGRAMS[name] if p in infos and infos[p]["pid"])
        detail = h.version if h.ok else h.detail
        if name == "prometheus":  # the dashboard draws from Prometheus: it shares its row
            url = health.dashboard_url()
            detail += f"; dashboard {url}" + ("" if health._port_open(url, 2.0) else " (not answering)")
        rows.append(ServiceStatus(name, h.ok, h.url, pids, detail, resident_mib(pids)))
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
    try:
        wait_until(lambda: not _alive(pid), timeout=timeout, interval=0.5)
    except TimedOut:
        log.warning("supervisor (pid %d) is still running %.0f s after shutdown", pid, timeout)
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
