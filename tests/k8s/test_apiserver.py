"""The manifests against a real Kubernetes API server (`make k8s-verify`; not part of `make test`).

etcd (Debian's etcd-server) and kube-apiserver (built from Go modules at the pinned version) start on 127.0.0.1,
ports 16379/16380 and 16443, in a temporary folder, and stop at the end. The vendored CRDs are applied server-side;
every manifest of each overlay goes through `kubectl apply --dry-run=server` (the API server's own validation,
defaulting and admission, CRD schemas included); then each overlay's namespaces and RBAC are applied for real and
`kubectl auth can-i` asks what each ServiceAccount may do; last, the DAG's step pods are created (dry run) where
the DAG puts them. Run with `-s` to see the tables.

Skipped unless SENSOROPS_K8S_VERIFY=1 (set by `make k8s-verify`, after deploy/k8s/verify/kube-tools.sh built the
tools).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from sensorops import config
from sensorops.versions import versions

pytestmark = pytest.mark.skipif(
    os.environ.get("SENSOROPS_K8S_VERIFY") != "1", reason="needs the API server tools: run `make k8s-verify`"
)

K8S = config.ROOT / "deploy" / "k8s"
TOOLS = config.ROOT / "_build" / "tools"
ETCD_CLIENT, ETCD_PEER, API_PORT = 16379, 16380, 16443
TOKEN = "sensorops-verify-admin"

_spec = importlib.util.spec_from_file_location("sensorops_k8stools", K8S / "k8stools.py")
k8stools = importlib.util.module_from_spec(_spec)
sys.modules["sensorops_k8stools"] = k8stools
_spec.loader.exec_module(k8stools)

# (account "namespace/name", verb, resource, namespace, expected answer)
DATA, ML, ORCH = "sensorops-data", "sensorops-ml", "sensorops-orchestration"
CAN_I = [
    # The Airflow pod launcher: step pods in the orchestration namespace, and nowhere else.
    (f"{ORCH}/airflow-scheduler", "create", "pods", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "delete", "pods", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "patch", "pods", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "get", "pods/log", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "create", "pods/exec", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "list", "events", ORCH, True),
    (f"{ORCH}/airflow-scheduler", "create", "pods", DATA, False),
    (f"{ORCH}/airflow-scheduler", "create", "pods", ML, False),
    (f"{ORCH}/airflow-scheduler", "create", "pods", "default", False),
    (f"{ORCH}/airflow-scheduler", "get", "secrets", ORCH, False),
    (f"{ORCH}/airflow-scheduler", "create", "deployments.apps", ORCH, False),
    (f"{ORCH}/airflow-scheduler", "create", "rolebindings.rbac.authorization.k8s.io", ORCH, False),
    (f"{ORCH}/airflow-scheduler", "update", "configmaps", ORCH, False),
    # Flink JobManagers: their TaskManager pods and HA ConfigMaps, in the data plane only.
    (f"{DATA}/flink-stream", "create", "pods", DATA, True),
    (f"{DATA}/flink-stream", "update", "configmaps", DATA, True),
    (f"{DATA}/flink-stream", "get", "secrets", DATA, False),
    (f"{DATA}/flink-stream", "create", "pods", ORCH, False),
    (f"{DATA}/flink-stream", "create", "pods/exec", DATA, False),
    (f"{DATA}/flink-scoring", "create", "pods", DATA, True),
    (f"{DATA}/flink-scoring", "get", "secrets", DATA, False),
    # Everything else calls no Kubernetes API.
    *[
        (account, verb, resource, account.split("/")[0], False)
        for account in (
            f"{DATA}/seaweedfs",
            f"{ML}/mlflow",
            f"{ML}/mlflow-postgres",
            f"{ORCH}/airflow-api-server",
            f"{ORCH}/airflow-dag-processor",
            f"{ORCH}/airflow-triggerer",
            f"{ORCH}/airflow-migrate",
            f"{ORCH}/airflow-postgres",
            f"{ORCH}/sensorops-step",
            f"{ORCH}/default",
        )
        for verb, resource in (("get", "pods"), ("get", "secrets"), ("get", "configmaps"), ("create", "pods"))
    ],
]


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait(check, what: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[callable]:
    """A `kubectl` function bound to a fresh etcd + kube-apiserver; both stop (by their process ids) afterwards."""
    v = versions()
    etcd = TOOLS / f"etcd-{v['ETCD_DEBIAN_VERSION']}" / "usr" / "bin" / "etcd"
    kube = TOOLS / f"kube-v{v['K8S_VERSION']}"
    for binary in (etcd, kube / "kube-apiserver", kube / "kubectl"):
        assert binary.exists(), f"{binary} is missing: run deploy/k8s/verify/kube-tools.sh (make k8s-verify does)"
    for port in (ETCD_CLIENT, ETCD_PEER, API_PORT):
        assert _free(port), f"port {port} on 127.0.0.1 is in use"
    work = tmp_path_factory.mktemp("apiserver")
    subprocess.run(["openssl", "genrsa", "-out", work / "sa.key", "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "rsa", "-in", work / "sa.key", "-pubout", "-out", work / "sa.pub"], check=True, capture_output=True
    )
    (work / "tokens.csv").write_text(f'{TOKEN},verify-admin,verify-admin,"system:masters"\n')
    etcd_url, peer_url = f"http://127.0.0.1:{ETCD_CLIENT}", f"http://127.0.0.1:{ETCD_PEER}"
    procs: list[subprocess.Popen] = []
    logs = {name: (work / f"{name}.log").open("w") for name in ("etcd", "apiserver")}
    try:
        procs.append(
            subprocess.Popen(
                [etcd, "--name=verify", f"--data-dir={work / 'etcd'}", f"--listen-client-urls={etcd_url}",
                 f"--advertise-client-urls={etcd_url}", f"--listen-peer-urls={peer_url}",
                 f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster=verify={peer_url}"],
                stdout=logs["etcd"], stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        _wait(lambda: requests.get(f"{etcd_url}/health", timeout=2).ok, "etcd", 60, procs[0], work / "etcd.log")
        procs.append(
            subprocess.Popen(
                [kube / "kube-apiserver", f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
                 "--advertise-address=127.0.0.1", f"--secure-port={API_PORT}", f"--cert-dir={work / 'certs'}",
                 f"--token-auth-file={work / 'tokens.csv'}", "--authorization-mode=RBAC",
                 "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                 f"--service-account-key-file={work / 'sa.pub'}",
                 f"--service-account-signing-key-file={work / 'sa.key'}",
                 "--service-cluster-ip-range=10.96.0.0/16", "--enable-priority-and-fairness=false"],
                stdout=logs["apiserver"], stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = f"https://127.0.0.1:{API_PORT}/readyz"
        _wait(
            lambda: requests.get(url, headers=headers, verify=False, timeout=5).ok,
            "kube-apiserver",
            300,
            procs[1],
            work / "apiserver.log",
        )
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "verify",
                            "cluster": {"server": f"https://127.0.0.1:{API_PORT}", "insecure-skip-tls-verify": True},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": TOKEN}}],
                    "contexts": [{"name": "verify", "context": {"cluster": "verify", "user": "admin"}}],
                    "current-context": "verify",
                }
            )
        )

        def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [str(kube / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if check and done.returncode != 0:
                raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
            return done

        yield run
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in logs.values():
            f.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def crds(kubectl) -> list[str]:
    files = sorted(p for p in (K8S / "vendor").rglob("*") if p.suffix in (".yaml", ".yml"))
    names = []
    for path in files:
        done = kubectl("apply", "--server-side", "-o", "name", "-f", str(path))
        names += done.stdout.split()
    kubectl("wait", "--for=condition=Established", "--timeout=120s", *names)
    print(f"\nCRDs applied server-side and established: {', '.join(n.split('/')[-1] for n in names)}")
    return names


@pytest.mark.parametrize("overlay", k8stools.OVERLAYS)
def test_every_manifest_is_accepted_by_the_api_server(kubectl, crds, overlay) -> None:
    text = k8stools.render(overlay)
    docs = k8stools.documents(text)
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces))  # namespaced dry runs need them to exist
    done = kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    accepted = [line for line in done.stdout.splitlines() if "(server dry run)" in line]
    print(f"\n{overlay}: {len(accepted)} of {len(docs)} resources accepted by kube-apiserver (--dry-run=server)")
    for line in accepted:
        print(f"  {line}")
    assert done.returncode == 0, done.stderr[-4000:]
    assert len(accepted) == len(docs)
    # Pod Security admission warns about workloads whose pods the namespace's `restricted` profile would refuse.
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning")]
    none = "  no warnings: Pod Security `restricted` admits every pod template"
    print("\n".join(f"  {w}" for w in warnings) or none)
    assert not [w for w in warnings if "PodSecurity" in w], warnings


@pytest.mark.parametrize("overlay", k8stools.OVERLAYS)
def test_each_service_account_may_do_what_it_needs_and_no_more(kubectl, crds, overlay) -> None:
    docs = k8stools.documents(k8stools.render(overlay))
    rbac = [d for d in docs if d["kind"] in ("Namespace", "ServiceAccount", "Role", "RoleBinding")]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    accounts = {f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in docs if d["kind"] == "ServiceAccount"}
    wrong = []
    print(f"\n{overlay}: kubectl auth can-i --as=system:serviceaccount:NAMESPACE:NAME")
    for account, verb, resource, namespace, expected in CAN_I:
        assert account in accounts, f"{account} is not in the {overlay} manifests"
        ns, name = account.split("/")
        kind, _, sub = resource.partition("/")  # `can-i VERB pods/exec` would ask about a pod named "exec"
        subresource = [f"--subresource={sub}"] if sub else []
        done = kubectl(
            "auth", "can-i", verb, kind, *subresource, "-n", namespace, f"--as=system:serviceaccount:{ns}:{name}",
            check=False,
        )  # fmt: skip
        answer = done.stdout.strip()
        print(f"  {account:42} {verb:7} {resource:40} in {namespace:24} {answer}")
        if (answer == "yes") != expected:
            wrong.append((account, verb, resource, namespace, answer))
    listing = kubectl("auth", "can-i", "--list", "-n", ORCH, f"--as=system:serviceaccount:{ORCH}:airflow-scheduler")
    print(f"\n{overlay}: everything airflow-scheduler may do in {ORCH}:\n{listing.stdout}")
    assert not wrong, wrong


def test_the_dags_step_pods_are_admitted(kubectl, crds, tmp_path) -> None:
    """The pods as the DAG builds them in Kubernetes mode, created (dry run) in the namespace the DAG names, under
    its Pod Security `restricted` and with their ServiceAccount, which must exist there."""
    docs = k8stools.documents(k8stools.render("dev"))
    rendered = k8stools.dag_pods(docs, tmp_path)["pods"]
    pods = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(rendered.values())})
    accounts = [d for d in docs if d["kind"] in ("Namespace", "ServiceAccount")]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(accounts))
    created = kubectl("create", "--dry-run=server", "-f", "-", stdin=pods, check=False)
    print(f"\nthe DAG's step pods:\n{(created.stdout + created.stderr).strip()}")
    assert created.returncode == 0
    assert created.stdout.count("(server dry run)") == len(json.loads(pods)["items"])
    assert "Warning" not in created.stderr
