"""Offline validation of the cluster manifests: render, check against schemas, check the security rules.

`python deploy/k8s/k8stools.py tools` builds the tools, `... validate` renders every overlay and checks it. Used by
`make k8s-tools`, `make k8s-validate` and tests/unit/test_k8s_manifests.py; nothing here reaches a network but the
Go module proxy and PyPI, once, for the pinned tools (kept under `_build/tools/`).

- kustomize and kubeconform are built with `go install` at the versions of deploy/local/versions.env.
- Kubernetes' JSON schemas are those of the `kubernetes-validate` wheel (its `-local-strict` set: additional
  properties are errors), downloaded without its dependencies; their `$ref`s name `/api/_definitions.json`, so each
  resource's schema is written self-contained: the definitions it reaches copied into its `$defs`, its `$ref`s
  rewritten to them.
- The CRDs' schemas (deploy/k8s/vendor/) become JSON schemas in kubeconform's naming (`kind-group-version.json`),
  strict as well: an object that lists its properties allows no others unless the CRD says it preserves them.
- `policy` holds the rules a reviewer checks by eye: limits, non-root, tags, default deny, Secrets, accounts, PDBs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VENDOR = K8S / "vendor"
OVERLAYS = ("dev", "production")
TOOLS = ROOT / "_build" / "tools"
VERSIONS_FILE = ROOT / "deploy" / "local" / "versions.env"
GO_TOOLS = {
    "kustomize": ("sigs.k8s.io/kustomize/kustomize/v5", "KUSTOMIZE_VERSION"),
    "kubeconform": ("github.com/yannh/kubeconform/cmd/kubeconform", "KUBECONFORM_VERSION"),
}


def versions() -> dict[str, str]:
    """deploy/local/versions.env (read here too: this file runs without the project installed)."""
    pairs = (line.split("=", 1) for line in VERSIONS_FILE.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def tool(name: str) -> Path:
    """The path of a built tool: one folder per version, so a version bump builds anew."""
    _, key = GO_TOOLS[name]
    return TOOLS / f"{name}-v{versions()[key]}" / name


def ensure_tools() -> dict[str, Path]:
    """Build whatever tool is missing (`go install` from the Go module proxy)."""
    paths = {}
    for name, (module, key) in GO_TOOLS.items():
        path = tool(name)
        if not path.exists():
            env = {**os.environ, "GOBIN": str(path.parent), "GOTOOLCHAIN": "local"}
            cmd = ["go", "install", f"{module}@v{versions()[key]}"]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"go install {module} failed:\n{done.stderr[-3000:]}")
        paths[name] = path
    return paths


# --- schemas ---------------------------------------------------------------------------------------------------


def k8s_schema_dir() -> Path:
    return TOOLS / f"schemas-kubernetes-validate-{versions()['KUBERNETES_VALIDATE_VERSION']}" / k8s_minor_dir()


def k8s_minor_dir() -> str:
    major, minor = versions()["K8S_VERSION"].split(".")[:2]
    return f"v{major}.{minor}.0-local-strict"


REF = "/api/_definitions.json#/$defs/"


def _self_contained(schema: dict, definitions: dict) -> dict:
    """A resource's schema with the definitions it reaches copied in and its `$ref`s made local (`#/$defs/...`;
    the definitions refer to each other that way already).

    The wheel's schemas point into one 1.5 MB `_definitions.json`; kubeconform compiles that whole file again for
    every kind (13 s an overlay here), whereas a resource's own closure compiles in milliseconds.
    """
    defs = definitions["$defs"]
    needed: set[str] = set()
    todo = [schema]
    while todo:
        text = json.dumps(todo.pop())
        for ref in set(re.findall(r'"\$ref": "(?:/api/_definitions\.json)?#/\$defs/([^"]+)"', text)):
            if ref not in needed:
                needed.add(ref)
                todo.append(defs[ref])
    local = {**{k: v for k, v in schema.items() if k != "$id"}, "$schema": definitions["$schema"]}
    local["$defs"] = {k: defs[k] for k in sorted(needed)}
    return json.loads(json.dumps(local).replace(REF, "#/$defs/"))


def ensure_k8s_schemas() -> Path:
    """Unpack the Kubernetes schemas of the pinned minor from the kubernetes-validate wheel, `$ref`s made local."""
    out = k8s_schema_dir()
    if (out / ".done").exists():
        return out
    version = versions()["KUBERNETES_VALIDATE_VERSION"]
    wheels = TOOLS / "wheels"
    wheel = next(wheels.glob(f"kubernetes_validate-{version}-*.whl"), None)
    if wheel is None:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        cmd += ["-d", str(wheels), f"kubernetes-validate=={version}"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wheel = next(wheels.glob(f"kubernetes_validate-{version}-*.whl"))
    prefix = f"kubernetes_validate/kubernetes-json-schema/{k8s_minor_dir()}/"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            raise RuntimeError(f"{wheel.name} has no schemas for {k8s_minor_dir()}")
        definitions = json.loads(z.read(prefix + "_definitions.json"))
        for name in names:
            schema = json.loads(z.read(name))
            if "x-kubernetes-group-version-kind" in schema:  # a resource, not a part of one
                (out / name[len(prefix) :]).write_text(json.dumps(_self_contained(schema, definitions)))
    (out / ".done").write_text(version)
    return out


def _strict(node: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as a strict JSON schema (draft 4 semantics, as kubeconform reads them)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node:
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def crd_schema_dir() -> Path:
    return TOOLS / "schemas-crds"


def crd_schemas(crd_files: Iterable[Path] | None = None, out: Path | None = None) -> Path:
    """One strict JSON schema per served version of each vendored CRD, named as kubeconform looks them up."""
    out = out or crd_schema_dir()
    files = sorted(crd_files or [*VENDOR.rglob("*.yaml"), *VENDOR.rglob("*.yml")])
    stamp = json.dumps([[str(f), f.stat().st_mtime_ns] for f in files])
    if (out / ".done").exists() and (out / ".done").read_text() == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in files:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if not v.get("served", True):
                    continue
                schema = _strict(v["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                props.setdefault("metadata", {"type": "object"})
                props["metadata"].pop("additionalProperties", None)  # ObjectMeta: checked by the API server
                name = f"{kind.lower()}-{group.split('.')[0]}-{v['name']}.json"
                (out / name).write_text(json.dumps(schema))
    (out / ".done").write_text(stamp)
    return out


# --- render and check ------------------------------------------------------------------------------------------


def render(overlay: str | Path, kustomize: Path | None = None) -> str:
    """`kustomize build` of an overlay (a name under overlays/, or a folder)."""
    path = overlay if isinstance(overlay, Path) else K8S / "overlays" / overlay
    done = subprocess.run(
        [str(kustomize or tool("kustomize")), "build", str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed:\n{done.stderr}")
    return done.stdout


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubeconform(text: str, kubeconform_bin: Path | None = None) -> tuple[bool, dict]:
    """Validate rendered manifests (strict, every kind must have a schema). Returns (passed, kubeconform's JSON)."""
    k8s_dir, crd_dir = ensure_k8s_schemas(), crd_schemas()
    cmd = [str(kubeconform_bin or tool("kubeconform")), "-strict", "-summary", "-output", "json"]
    cmd += ["-kubernetes-version", versions()["K8S_VERSION"]]
    for folder in (k8s_dir, crd_dir):
        cmd += ["-schema-location", f"{folder}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"]
    done = subprocess.run([*cmd, "-"], input=text, capture_output=True, text=True, timeout=120)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {"resources": [], "summary": {}, "raw": done.stdout + done.stderr}
    return done.returncode == 0, report


# --- policy ----------------------------------------------------------------------------------------------------

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
NAMESPACED_EXEMPT_ACCOUNTS = {"default"}  # declared only to switch its token off


def _pod_spec(doc: dict) -> dict | None:
    if doc["kind"] in POD_KINDS:
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] == "Pod":
        return doc["spec"]
    return None


def _name(doc: dict) -> str:
    return f"{doc['kind']} {doc['metadata'].get('namespace', '-')}/{doc['metadata']['name']}"


def _images(doc: dict) -> Iterator[str]:
    spec = _pod_spec(doc)
    if spec:
        for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            yield c.get("image", "")
    if doc["kind"] == "FlinkDeployment":
        yield doc["spec"].get("image", "")
        for part in ("podTemplate",):
            for c in doc["spec"].get(part, {}).get("spec", {}).get("containers", []):
                if "image" in c:
                    yield c["image"]


def policy(docs: list[dict]) -> list[str]:
    """The security rules, as a list of violations (empty: all kept)."""
    errors: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in by_kind.get("ServiceAccount", [])}
    used_accounts: dict[tuple[str, str], str] = {}

    def own_account(doc: dict, account: str | None) -> None:
        ns = doc["metadata"]["namespace"]
        if not account or account in NAMESPACED_EXEMPT_ACCOUNTS:
            errors.append(f"{_name(doc)}: runs as the namespace's default ServiceAccount")
            return
        if (ns, account) not in accounts:
            errors.append(f"{_name(doc)}: ServiceAccount {account} is not declared")
        other = used_accounts.setdefault((ns, account), _name(doc))
        if other != _name(doc):
            errors.append(f"{_name(doc)}: shares ServiceAccount {account} with {other}")

    for doc in docs:
        name = _name(doc)
        for image in _images(doc):
            tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
            if not tag or tag == "latest":
                errors.append(f"{name}: image {image!r} has no pinned tag")
        spec = _pod_spec(doc)
        if spec is not None:
            own_account(doc, spec.get("serviceAccountName"))
            pod_sc = spec.get("securityContext", {})
            if pod_sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
                errors.append(f"{name}: no seccompProfile RuntimeDefault")
            for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                where = f"{name} container {c['name']}"
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    if not {"cpu", "memory"} <= set(res.get(part, {})):
                        errors.append(f"{where}: no {part} for cpu and memory")
                sc = c.get("securityContext", {})
                if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                    errors.append(f"{where}: runAsNonRoot is not true")
                if sc.get("allowPrivilegeEscalation") is not False:
                    errors.append(f"{where}: allowPrivilegeEscalation is not false")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    errors.append(f"{where}: capabilities are not all dropped")
                if sc.get("readOnlyRootFilesystem") is not True:
                    errors.append(f"{where}: root filesystem is writable")
        if doc["kind"] == "FlinkDeployment":
            s = doc["spec"]
            own_account(doc, s.get("serviceAccount"))
            for role in ("jobManager", "taskManager"):
                if not {"cpu", "memory"} <= set(s.get(role, {}).get("resource", {})):
                    errors.append(f"{name}: {role}.resource needs cpu and memory (the operator's requests/limits)")
            pod = s.get("podTemplate", {}).get("spec", {})
            if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
                errors.append(f"{name}: podTemplate runAsNonRoot is not true")
            for c in pod.get("containers", []):
                sc = c.get("securityContext", {})
                if sc.get("allowPrivilegeEscalation") is not False or "ALL" not in sc.get("capabilities", {}).get(
                    "drop", []
                ):
                    errors.append(f"{name}: container {c['name']} may escalate or keeps capabilities")
            selectors = [
                p["spec"].get("selector", {}).get("matchLabels", {}) for p in by_kind.get("PodDisruptionBudget", [])
            ]
            if {"app": doc["metadata"]["name"], "component": "taskmanager"} not in selectors:
                errors.append(f"{name}: no PodDisruptionBudget for its TaskManagers")
        if doc["kind"] == "Kafka":
            kafka = doc["spec"]["kafka"]
            if "podDisruptionBudget" not in kafka.get("template", {}):
                errors.append(f"{name}: no PodDisruptionBudget template for the brokers")
            if kafka.get("template", {}).get("pod", {}).get("securityContext", {}).get("runAsNonRoot") is not True:
                errors.append(f"{name}: broker pods are not runAsNonRoot")
        if doc["kind"] == "KafkaNodePool" and not {"requests", "limits"} <= set(doc["spec"].get("resources", {})):
            errors.append(f"{name}: no requests and limits")
        if doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData")):
            errors.append(f"{name}: a Secret with its values inlined (generate it with make_secrets.py)")
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            errors.append(f"{name}: cluster-wide RBAC (a Role in one namespace is enough)")
        if doc["kind"] == "Role":
            for rule in doc.get("rules", []):
                if "*" in rule.get("verbs", []) or "*" in rule.get("resources", []):
                    errors.append(f"{name}: a wildcard rule")
    for ns in by_kind.get("Namespace", []):
        n = ns["metadata"]["name"]
        if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            errors.append(f"Namespace {n}: Pod Security 'restricted' is not enforced")
        deny = [
            p
            for p in by_kind.get("NetworkPolicy", [])
            if p["metadata"]["namespace"] == n
            and p["spec"].get("podSelector") == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
        ]
        if not deny:
            errors.append(f"Namespace {n}: no default-deny NetworkPolicy")
    pod_creators = {
        r["metadata"]["namespace"]
        for r in by_kind.get("Role", [])
        for rule in r.get("rules", [])
        if "pods" in rule.get("resources", [])
        and "create" in rule.get("verbs", [])
        and not r["metadata"]["name"].startswith("flink-")  # Flink JobManagers create their own TaskManagers
    }
    if len(pod_creators) > 1:
        errors.append(f"pods may be created by a launcher in more than one namespace: {sorted(pod_creators)}")
    return errors


def validate(overlays: Iterable[str] = OVERLAYS) -> dict[str, dict]:
    """Render, kubeconform and policy-check each overlay: {overlay: {"valid", "resources", "invalid", "policy"}}."""
    tools = ensure_tools()
    results = {}
    for overlay in overlays:
        text = render(overlay, tools["kustomize"])
        ok, report = kubeconform(text, tools["kubeconform"])
        bad = [r for r in report.get("resources", []) if r.get("status") not in ("statusValid", "valid")]
        results[overlay] = {
            "valid": ok,
            "resources": len(documents(text)),
            "summary": report.get("summary", {}),
            "invalid": bad,
            "policy": policy(documents(text)),
        }
    return results


RENDER_PODS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from kubernetes.client import ApiClient

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["sensor_mlops_pipeline"]
tasks = [t for t in dag.tasks if hasattr(t, "build_pod_request_obj")]  # the steps; `enabled` runs in the worker
pods = {t.task_id: ApiClient().sanitize_for_serialization(t.build_pod_request_obj(dry_run=True)) for t in tasks}
labels = type(tasks[0])._get_ti_pod_labels  # what a real run adds (a dry run leaves them out)

class TI:
    dag_id, task_id, map_index, try_number = dag.dag_id, tasks[0].task_id, -1, 1

print(json.dumps({"pods": pods, "labels": labels({"ti": TI(), "run_id": "r", "dag": dag})}))
"""


def dag_pods(docs: list[dict], airflow_home: Path) -> dict[str, Any]:
    """The DAG parsed in Kubernetes mode with the overlay's Airflow settings (`airflow-config`), its pods built as
    Airflow builds them: `{"config": the settings, "pods": {task id: pod}, "labels": a run's pod labels}`."""
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "airflow-config")["data"]
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home)}
    env.update({k: v for k, v in settings.items() if k.startswith(("SENSOROPS_", "AIRFLOW_CONN_"))})
    done = subprocess.run(
        [sys.executable, "-c", RENDER_PODS, str(ROOT / "deploy" / "airflow" / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"parsing the DAG in Kubernetes mode failed:\n{done.stderr[-3000:]}")
    return {"config": settings, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["tools", "validate", "render"])
    parser.add_argument("overlays", nargs="*", default=list(OVERLAYS))
    args = parser.parse_args(argv)
    if args.command == "tools":
        for name, path in ensure_tools().items():
            print(f"{name}: {path}")
        print(f"kubernetes schemas: {ensure_k8s_schemas()}")
        print(f"CRD schemas: {crd_schemas()}")
        return 0
    if args.command == "render":
        for overlay in args.overlays:
            sys.stdout.write(render(overlay))
        return 0
    failed = False
    for overlay, r in validate(args.overlays).items():
        print(
            f"{overlay}: {r['resources']} resources, kubeconform {r['summary']}, policy violations {len(r['policy'])}"
        )
        for bad in r["invalid"]:
            print(f"  invalid: {bad.get('kind')} {bad.get('name')}: {bad.get('msg')}")
        for violation in r["policy"]:
            print(f"  policy: {violation}")
        failed = failed or not r["valid"] or bool(r["policy"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
