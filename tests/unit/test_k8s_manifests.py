"""The cluster manifests (deploy/k8s/), offline: every overlay renders, validates against the Kubernetes 1.34 schemas
and the vendored CRDs' schemas (strict), keeps the security rules, and agrees with the project's versions and
settings; broken manifests are caught; the DAG's pods in Kubernetes mode are what the manifests expect.

The tools (kustomize, kubeconform: `go install` at pinned versions) and the schemas are built once into
`_build/tools/` (deploy/k8s/k8stools.py); after that a run takes seconds. A real API server checks the same
manifests in `make k8s-verify` (tests/k8s/).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

from sensorops import config, pipeline
from sensorops.versions import versions

K8S = config.ROOT / "deploy" / "k8s"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


k8stools = _load("sensorops_k8stools", K8S / "k8stools.py")
make_secrets = _load("sensorops_make_secrets", K8S / "make_secrets.py")
PROJECT_VERSION = tomllib.loads((config.ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    paths = k8stools.ensure_tools()
    k8stools.ensure_k8s_schemas()
    k8stools.crd_schemas()
    return paths


@pytest.fixture(scope="module")
def rendered(tools: dict[str, Path]) -> dict[str, str]:
    return {overlay: k8stools.render(overlay, tools["kustomize"]) for overlay in k8stools.OVERLAYS}


@pytest.fixture(scope="module")
def docs(rendered: dict[str, str]) -> dict[str, list[dict]]:
    return {overlay: k8stools.documents(text) for overlay, text in rendered.items()}


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {f"{d['metadata'].get('namespace', '')}/{d['metadata']['name']}": d for d in docs if d["kind"] == kind}


# --- schemas and policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", k8stools.OVERLAYS)
def test_every_rendered_manifest_is_valid_against_the_schemas(overlay, rendered, tools) -> None:
    ok, report = k8stools.kubeconform(rendered[overlay], tools["kubeconform"])
    bad = [(r.get("kind"), r.get("name"), r.get("msg")) for r in report["resources"] if r["status"] != "statusValid"]
    assert ok and not bad, bad or report
    assert report["summary"]["valid"] == len(k8stools.documents(rendered[overlay])) > 50
    assert report["summary"]["skipped"] == 0, "every kind has a schema, CRDs included"


@pytest.mark.parametrize("overlay", k8stools.OVERLAYS)
def test_every_rendered_manifest_keeps_the_security_rules(overlay, docs) -> None:
    assert k8stools.policy(docs[overlay]) == []


BROKEN_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken, namespace: sensorops-ml}
spec:
  replicas: 1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      serviceAccountName: broken
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: app
          image: ghcr.io/sensorops/sensorops:0.1.0
          imagePullPolicey: Always
          resources: {requests: {cpu: 10m, memory: 10Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
"""

BROKEN_TOPIC = """
apiVersion: kafka.strimzi.io/v1
kind: KafkaTopic
metadata: {name: broken, namespace: sensorops-data, labels: {strimzi.io/cluster: sensorops}}
spec:
  partitions: six
  retention: 1d
"""


def test_a_misspelt_field_and_a_missing_limit_are_caught(tools) -> None:
    ok, report = k8stools.kubeconform(BROKEN_DEPLOYMENT, tools["kubeconform"])
    assert not ok
    [result] = report["resources"]
    assert result["status"] == "statusInvalid" and "imagePullPolicey" in result["msg"]
    violations = k8stools.policy(list(yaml.safe_load_all(BROKEN_DEPLOYMENT)))
    assert "Deployment sensorops-ml/broken container app: no limits for cpu and memory" in violations
    assert any("ServiceAccount broken is not declared" in v for v in violations)


def test_a_broken_custom_resource_is_caught_by_the_crd_schema(tools) -> None:
    ok, report = k8stools.kubeconform(BROKEN_TOPIC, tools["kubeconform"])
    assert not ok
    [result] = report["resources"]
    assert result["status"] == "statusInvalid"
    assert "partitions" in result["msg"] and "retention" in result["msg"], result["msg"]


def test_policy_catches_the_other_rules() -> None:
    bad = list(
        yaml.safe_load_all(
            textwrap.dedent("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: open}
            ---
            apiVersion: v1
            kind: Secret
            metadata: {name: inline, namespace: open}
            stringData: {password: hunter2}
            ---
            apiVersion: batch/v1
            kind: Job
            metadata: {name: root, namespace: open}
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers:
                    - name: c
                      image: busybox:latest
                      resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: ClusterRole
            metadata: {name: everything}
            rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
            """)
        )
    )
    text = "\n".join(k8stools.policy(bad))
    for expected in (
        "Namespace open: no default-deny NetworkPolicy",
        "Namespace open: Pod Security 'restricted' is not enforced",
        "Secret open/inline: a Secret with its values inlined",
        "image 'busybox:latest' has no pinned tag",
        "Job open/root: runs as the namespace's default ServiceAccount",
        "container c: runAsNonRoot is not true",
        "container c: root filesystem is writable",
        "ClusterRole -/everything: cluster-wide RBAC",
    ):
        assert expected in text


# --- what the overlays contain -------------------------------------------------------------------------------


def test_the_overlays_size_the_pipeline(docs) -> None:
    dev, prod = docs["dev"], docs["production"]
    assert by_kind(dev, "KafkaNodePool")["sensorops-data/dual"]["spec"]["replicas"] == 1
    assert by_kind(prod, "KafkaNodePool")["sensorops-data/dual"]["spec"]["replicas"] == 3
    for name, fd in by_kind(dev, "FlinkDeployment").items():
        assert fd["spec"]["taskManager"]["replicas"] == 1, name
        assert "high-availability.type" not in fd["spec"]["flinkConfiguration"]
    for name, fd in by_kind(prod, "FlinkDeployment").items():
        spec, conf = fd["spec"], fd["spec"]["flinkConfiguration"]
        assert spec["taskManager"]["replicas"] >= 2 and spec["jobManager"]["replicas"] == 2, name
        assert conf["high-availability.type"] == "kubernetes"
        assert conf["high-availability.storageDir"].startswith(f"s3://{config.CHECKPOINT_BUCKET}/")
        assert conf["execution.checkpointing.dir"].startswith(f"s3://{config.CHECKPOINT_BUCKET}/")
        assert spec["job"]["upgradeMode"] == "last-state"
    kafka = by_kind(prod, "Kafka")["sensorops-data/sensorops"]["spec"]["kafka"]
    assert kafka["authorization"]["type"] == "simple"
    assert [listener["authentication"]["type"] for listener in kafka["listeners"]] == ["scram-sha-512"]
    assert {t["spec"]["replicas"] for t in by_kind(prod, "KafkaTopic").values()} == {3}


def test_the_topics_are_the_pipelines(docs) -> None:
    topics = {t["metadata"]["name"]: t["spec"] for t in by_kind(docs["dev"], "KafkaTopic").values()}
    expected = {
        config.SENSOR_TOPIC,
        config.FEATURES_TOPIC,
        config.AGGREGATES_TOPIC,
        config.DEAD_LETTER_TOPIC,
        config.SCORES_TOPIC,
        config.ALERTS_TOPIC,
        config.MODEL_METRICS_TOPIC,
    }
    assert set(topics) == expected
    for name, spec in topics.items():
        assert spec["partitions"] >= 1 and int(spec["config"]["retention.ms"]) > 0, name


def test_the_jobs_run_the_projects_job_modules_through_the_python_driver(docs) -> None:
    jobs = {fd["metadata"]["name"]: fd["spec"] for fd in by_kind(docs["dev"], "FlinkDeployment").values()}
    assert set(jobs) == {"sensor-stream", "sensor-scoring"}
    for spec in jobs.values():
        assert spec["flinkVersion"] == "v" + "_".join(versions()["FLINK_VERSION"].split(".")[:2])
        assert spec["job"]["entryClass"] == "org.apache.flink.client.python.PythonDriver"
        assert spec["job"]["jarURI"].endswith(f"flink-python-{versions()['FLINK_VERSION']}.jar")
        args = spec["job"]["args"]
        module = args[args.index("-pym") + 1]
        assert (config.ROOT / "lib" / (module.replace(".", "/") + ".py")).exists(), module
        settings = json.loads(args[args.index("--config-json") + 1])
        assert settings["name"] in ("sensorops-stream", "sensorops-scoring")  # the KafkaUsers' ACLs name these
        assert "PrometheusReporterFactory" in spec["flinkConfiguration"]["metrics.reporter.prom.factory.class"]
    from sensorops.stream.job import StreamJobConfig

    stream_args = jobs["sensor-stream"]["job"]["args"]
    stream_cfg = StreamJobConfig.from_json(stream_args[stream_args.index("--config-json") + 1])  # fields it knows
    jar = stream_cfg.native_jar.removeprefix("file://")
    assert f"/build/out/sensorops-udf.jar {jar}" in (K8S / "flink.Containerfile").read_text(), "the image's UDF jar"


def test_images_and_versions_agree_with_versions_env(docs) -> None:
    v = versions()
    expected = {
        "ghcr.io/sensorops/sensorops": PROJECT_VERSION,
        "ghcr.io/sensorops/sensorops-flink": PROJECT_VERSION,
        "ghcr.io/sensorops/sensorops-airflow": PROJECT_VERSION,
        "ghcr.io/sensorops/sensorops-mlflow": PROJECT_VERSION,
        "chrislusf/seaweedfs": v["SEAWEEDFS_VERSION"],
        "postgres": v["POSTGRES_IMAGE_TAG"],
    }
    for overlay, ds in docs.items():
        for d in ds:
            for image in k8stools._images(d):
                name, _, tag = image.rpartition(":")
                assert expected.get(name) == tag, f"{overlay}: {image}"
        assert {k["spec"]["kafka"]["version"] for k in by_kind(ds, "Kafka").values()} == {v["KAFKA_K8S_VERSION"]}
    airflow_config = by_kind(docs["dev"], "ConfigMap")["sensorops-orchestration/airflow-config"]["data"]
    assert airflow_config["SENSOROPS_IMAGE"] == pipeline.DEFAULT_IMAGE


def _containerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), flags=re.M))


def test_containerfiles_pin_the_versions_of_versions_env() -> None:
    v = versions()
    flink = _containerfile_args(K8S / "flink.Containerfile")
    assert flink["FLINK_VERSION"] == v["FLINK_VERSION"]
    assert flink["FLINK_KAFKA_CONNECTOR_VERSION"] == v["FLINK_KAFKA_CONNECTOR_VERSION"]
    assert flink["FLINK_FORMATS_VERSION"] == v["FLINK_FORMATS_VERSION"]
    assert flink["HADOOP_VERSION"] == v["HADOOP_VERSION"]
    assert flink["JACKSON_VERSION"] == v["JACKSON_VERSION"]  # shaded into the stream job's Java UDF
    assert _containerfile_args(K8S / "airflow.Containerfile")["AIRFLOW_VERSION"] == v["AIRFLOW_VERSION"]
    assert _containerfile_args(K8S / "mlflow.Containerfile")["MLFLOW_VERSION"] == v["MLFLOW_VERSION"]
    for name in ("flink", "airflow", "mlflow"):
        assert _containerfile_args(K8S / f"{name}.Containerfile")["PYTHON_VERSION"] == v["PYTHON_MIN"], name
    flink_text = (K8S / "flink.Containerfile").read_text()
    assert "-c requirements.lock ." in flink_text, "the Flink image installs the runtime package under the lock"
    assert "deploy/local/pom.xml" in flink_text, "the connector jars come from the local platform's pom"


def test_the_vendored_crds_are_the_pinned_operators() -> None:
    v = versions()
    readme = (K8S / "vendor" / "README.md").read_text()
    assert f"strimzi-{v['STRIMZI_VERSION']}" in readme and f"operator-{v['FLINK_OPERATOR_VERSION']}" in readme
    assert (K8S / "vendor" / f"strimzi-{v['STRIMZI_VERSION']}").is_dir()
    assert (K8S / "vendor" / f"flink-kubernetes-operator-{v['FLINK_OPERATOR_VERSION']}").is_dir()


# --- Secrets ---------------------------------------------------------------------------------------------------


def _referenced_secrets(docs: list[dict]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret a manifest refers to."""
    found = set()

    def walk(node, ns):
        if isinstance(node, dict):
            for key in ("secretKeyRef", "secretRef"):
                if key in node:
                    found.add((ns, node[key]["name"]))
            if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
                found.add((ns, node["secret"]["secretName"]))
            for value in node.values():
                walk(value, ns)
        elif isinstance(node, list):
            for value in node:
                walk(value, ns)

    for d in docs:
        walk(d.get("spec", {}), d["metadata"].get("namespace"))
        if d["kind"] == "ConfigMap" and "SENSOROPS_K8S_SECRET" in d.get("data", {}):
            found.add((d["data"]["SENSOROPS_K8S_NAMESPACE"], d["data"]["SENSOROPS_K8S_SECRET"]))
    return found


def _user_operator_secrets(docs: list[dict]) -> set[tuple[str, str]]:
    """The Secrets Strimzi's User Operator writes: one per SCRAM KafkaUser whose password it generates."""
    return {
        (u["metadata"]["namespace"], u["metadata"]["name"])
        for u in by_kind(docs, "KafkaUser").values()
        if "password" not in u["spec"]["authentication"]
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("secrets") / "s.json"
    assert make_secrets.main(["--out", str(out)]) == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    return json.loads(out.read_text())["items"]


def _secret_data(generated: list[dict], name: str) -> dict[str, str]:
    return next(s for s in generated if s["metadata"]["name"] == name)["stringData"]


def test_make_secrets_generates_every_referenced_secret_and_nothing_is_inlined(docs, generated) -> None:
    names = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in generated}
    for overlay, ds in docs.items():
        assert not by_kind(ds, "Secret"), f"{overlay}: Secrets are generated, not rendered"
        missing = _referenced_secrets(ds) - names - _user_operator_secrets(ds)
        assert not missing, missing
    again = json.loads(json.dumps(make_secrets.secrets_list()))
    assert again["items"][1]["stringData"] != generated[1]["stringData"], "fresh random values each time"
    s3 = json.loads(
        next(s for s in generated if s["metadata"]["name"] == "seaweedfs-s3-config")["stringData"]["s3.json"]
    )
    assert {i["name"] for i in s3["identities"]} == {"flink", "mlflow", "pipeline"}
    assert all(":" in action for i in s3["identities"] for action in i["actions"]), "every grant names its bucket"
    settings = _secret_data(generated, "sensorops-settings")
    assert set(config.DEFAULTS) - set(settings) <= {"AIRFLOW_API_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD"}


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_every_kafka_client_authenticates_as_its_own_kafka_user(docs, generated) -> None:
    """One listener, SCRAM; the jobs and the step pods connect to it as the KafkaUser whose password they hold."""
    for overlay, ds in docs.items():
        (kafka,) = by_kind(ds, "Kafka").values()
        listeners = kafka["spec"]["kafka"]["listeners"]
        assert [(x["port"], x.get("authentication", {}).get("type")) for x in listeners] == [(9094, "scram-sha-512")]
        users = {u["metadata"]["name"]: u for u in by_kind(ds, "KafkaUser").values()}
        for deployment in by_kind(ds, "FlinkDeployment").values():
            env = _env(deployment["spec"]["podTemplate"]["spec"]["containers"][0])
            assert env["KAFKA_BOOTSTRAP_SERVERS"].endswith(":9094"), overlay
            assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
            user = env["KAFKA_SASL_USERNAME"]
            assert user in users and "password" not in users[user]["spec"]["authentication"], user
            assert env["KAFKA_SASL_PASSWORD"] == {"secretKeyRef": {"name": user, "key": "password"}}
            assert "bootstrap_servers" not in json.loads(deployment["spec"]["job"]["args"][-1]), "one address: env"
        # The step pods run in another namespace: the password is make_secrets.py's, set on the user too.
        settings = _secret_data(generated, "sensorops-settings")
        steps = users[settings["KAFKA_SASL_USERNAME"]]["spec"]["authentication"]["password"]["valueFrom"]
        assert settings["KAFKA_SASL_PASSWORD"] == _secret_data(generated, steps["secretKeyRef"]["name"])["password"]
        assert settings["KAFKA_BOOTSTRAP_SERVERS"].endswith(":9094")
        assert settings["SENSOROPS_FLINK_JOBS"] == "operator"


# --- the DAG's Kubernetes mode ---------------------------------------------------------------------------------


# What a step pod's launcher must be allowed, and no more: create the pod, follow it (get, list, watch), read its
# log, exec into the XCom sidecar to read the result, label it as checked (patch), delete it, list its events.
LAUNCHER_NEEDS = {
    ("", "pods"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "pods/log"): {"get"},
    ("", "pods/exec"): {"create", "get"},
    ("", "events"): {"list"},
}


@pytest.fixture(scope="module")
def dag_pods(docs, tmp_path_factory) -> dict:
    """The DAG parsed in Kubernetes mode with the cluster's Airflow settings, its pods built as Airflow builds them."""
    return k8stools.dag_pods(docs["dev"], tmp_path_factory.mktemp("airflow"))


def test_dag_pods_run_the_project_image_with_the_cluster_settings(dag_pods, docs) -> None:
    namespace = dag_pods["config"]["SENSOROPS_K8S_NAMESPACE"]
    assert set(dag_pods["pods"]) == set(pipeline.STEPS)
    for name, pod in dag_pods["pods"].items():
        base = next(c for c in pod["spec"]["containers"] if c["name"] == "base")
        assert base["image"] == pipeline.DEFAULT_IMAGE, name
        assert base["command"] == ["python", "-m", "sensorops.pipeline"] and base["args"][0] == name
        assert pod["metadata"]["namespace"] == namespace
        assert base["envFrom"] == [{"secretRef": {"name": dag_pods["config"]["SENSOROPS_K8S_SECRET"]}}]
    # The step pods' NetworkPolicy (their egress to Kafka, S3, MLflow, Flink) selects them by the launcher's label.
    steps_policy = by_kind(docs["dev"], "NetworkPolicy")[f"{namespace}/pipeline-steps"]
    assert steps_policy["spec"]["podSelector"]["matchLabels"].items() <= dag_pods["labels"].items()


def test_the_launcher_may_do_exactly_what_the_tasks_need_in_one_namespace(dag_pods, docs) -> None:
    namespace = dag_pods["config"]["SENSOROPS_K8S_NAMESPACE"]
    ds = docs["production"]
    bindings = [b for b in by_kind(ds, "RoleBinding").values() if b["roleRef"]["name"] == "airflow-pod-launcher"]
    assert [(b["metadata"]["namespace"], [s["name"] for s in b["subjects"]]) for b in bindings] == [
        (namespace, ["airflow-scheduler"])
    ]
    role = by_kind(ds, "Role")[f"{namespace}/airflow-pod-launcher"]
    granted = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert granted == LAUNCHER_NEEDS
    scheduler = by_kind(ds, "Deployment")[f"{namespace}/airflow-scheduler"]["spec"]["template"]["spec"]
    assert scheduler["serviceAccountName"] == "airflow-scheduler" and scheduler["automountServiceAccountToken"]
    # The step pods themselves call no Kubernetes API: their account has no binding and mounts no token.
    for name, pod in dag_pods["pods"].items():
        account = pod["spec"].get("serviceAccountName") or "default"
        sa = by_kind(ds, "ServiceAccount")[f"{namespace}/{account}"]
        assert sa.get("automountServiceAccountToken") is False, name
        bound = {s["name"] for b in by_kind(ds, "RoleBinding").values() for s in b["subjects"]}
        assert account not in bound, name


def test_dag_pods_would_be_admitted_under_pod_security_restricted(dag_pods, docs) -> None:
    """The DAG's pods keep the manifests' security rules (`k8stools.policy`: Pod Security `restricted` and more: a
    declared account, requests and limits, read-only root filesystems), as the image's user, writing only to volumes.
    The XCom sidecar's requests and limits come from the launcher's Kubernetes connection (`airflow-config`)."""
    image = (K8S / "Containerfile").read_text()
    user = int(re.search(r"^USER (\d+)$", image, flags=re.M)[1])
    home = re.search(r"^ENV SENSOROPS_HOME=(\S+)$", image, flags=re.M)[1]
    for name, pod in dag_pods["pods"].items():
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "sensorops-step" and spec["automountServiceAccountToken"] is False, name
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == sc["runAsGroup"] == sc["fsGroup"] == user, name
        base, sidecar = spec["containers"]
        assert (base["name"], sidecar["name"]) == ("base", "airflow-xcom-sidecar")
        assert {"cpu", "memory"} <= set(sidecar["resources"]["limits"]), name
        # The root filesystem is read-only: HOME, the image's SENSOROPS_HOME and the XCom file are on emptyDirs.
        empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        writable = [m["mountPath"].rstrip("/") + "/" for m in base["volumeMounts"] if m["name"] in empty]
        home_env = next(e["value"] for e in base["env"] if e["name"] == "HOME")
        for path in (home_env, home, pipeline.pod.XCOM_FILE):
            assert any((path.rstrip("/") + "/").startswith(w) for w in writable), (name, path)
        for overlay in k8stools.OVERLAYS:  # with the manifests, so that the account must exist in the pod's namespace
            assert k8stools.policy([*docs[overlay], pod]) == [], (overlay, name)
