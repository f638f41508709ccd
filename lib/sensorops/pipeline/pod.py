"""A step's pod: its command line, `python -m sensorops.pipeline STEP --run-id ... --params ... --inputs ...`, and
the Kubernetes settings the DAG gives it.

In Kubernetes mode every task is a pod of the project's image running this command; Airflow renders the run id,
the parameters and the upstream XComs into its arguments (`pod_arguments`) and reads the step's output back from
the XCom file. Exit codes are those of every entry point (`errors.exit_code`): 0 done, 1 the step ran and found
something wrong (a service down, a failed data check), 2 a usage error, 130 interrupted.

The pod passes Pod Security `restricted` (the namespaces of deploy/k8s enforce it) with least privilege: its own
ServiceAccount with no binding and no token (the steps call Kafka, S3, MLflow and Flink, never the Kubernetes API),
the image's non-root user, the runtime's seccomp profile, no privilege escalation, no capability and a read-only root
filesystem in both containers (the step's and Airflow's XCom sidecar), with one scratch `emptyDir` at /tmp for the
step, and requests and limits. The values are plain data, as in a manifest (the image has no Kubernetes client):
the operator takes the security contexts as they are; `operators.pod_operator` wraps the rest in the client's models.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from sensorops.errors import EXIT_FAILED, EXIT_OK, ServiceUnavailable, UserError, exit_code
from sensorops.pipeline.checks import DataValidationError
from sensorops.pipeline.context import RunContext, RunParams
from sensorops.pipeline.steps import STEPS, run_step

log = logging.getLogger(__name__)

PROG = "python -m sensorops.pipeline"
XCOM_FILE = "/airflow/xcom/return.json"
"""Where the KubernetesPodOperator's sidecar reads a pod's XCom."""

NAMESPACE = "sensorops-orchestration"
"""Where the step pods run unless `SENSOROPS_K8S_NAMESPACE` says otherwise: the namespace of their ServiceAccount."""
SERVICE_ACCOUNT = "sensorops-step"
"""The step pods' account (deploy/k8s/base/orchestration/rbac.yaml): no RoleBinding, `automountServiceAccountToken:
false`; the pod asks for no token either."""
USER = 1000
"""The image's user, and the pod's group (`USER 1000` in deploy/k8s/Containerfile)."""
SCRATCH = "/tmp"
"""The step's only writable folder, an `emptyDir` (the root filesystem is read-only): the image's SENSOROPS_HOME
(/tmp/sensorops: the Flink client's state and logs) and HOME, for libraries that write under it."""
SCRATCH_SIZE = "1Gi"

POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": USER,
    "runAsGroup": USER,
    "fsGroup": USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
"""For the step's container and the XCom sidecar (alpine, a `sleep` loop that writes nothing)."""
RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
"""The step's container: pandas and scikit-learn on a batch of thousands of events, or the Flink client (a JVM that
starts a Python process) submitting the stream job. The XCom sidecar's come from the launcher's Kubernetes
connection (`AIRFLOW_CONN_KUBERNETES_DEFAULT` in deploy/k8s): the provider (cncf-kubernetes 10.25) takes them from
there only, not from the operator."""


def pod_arguments(name: str) -> list[str]:
    """The command-line arguments of a step's pod, as Airflow templates (run id, params, upstream XComs)."""
    pulls = ", ".join(f"{i}=ti.xcom_pull(task_ids='{i}')" for i in STEPS[name].inputs)
    return [
        name,
        "--run-id",
        "{{ run_id }}",
        "--run-after",
        "{{ dag_run.run_after }}",
        "--params",
        "{{ dict(params) | tojson }}",
        "--inputs",
        f"{{{{ dict({pulls}) | tojson }}}}",
        "--xcom-file",
        XCOM_FILE,
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=main.__doc__)
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--run-after", default="", help="ISO time the run started (default: now)")
    parser.add_argument("--params", default="{}", help="JSON object of RunParams fields")
    parser.add_argument("--inputs", default="{}", help="JSON object: upstream step -> its output")
    parser.add_argument("--xcom-file", default="", help="also write the output here (Airflow's pod XCom path)")
    return parser


def _read(args: argparse.Namespace) -> tuple[str, RunContext, dict[str, Any], str]:
    try:
        params, inputs = json.loads(args.params), json.loads(args.inputs)
    except json.JSONDecodeError as exc:
        raise UserError(f"--params and --inputs must be JSON objects: {exc}") from exc
    run_after = args.run_after or datetime.now(UTC).isoformat()
    ctx = RunContext(run_id=args.run_id, run_after=run_after, params=RunParams.from_mapping(params))
    return args.step, ctx, inputs, args.xcom_file


def parse_args(argv: list[str] | None = None) -> tuple[str, RunContext, dict[str, Any], str]:
    """The command line of a pod: (step, run context, upstream outputs, XCom file)."""
    return _read(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    step, ctx, inputs, xcom_file = _read(args)
    try:
        output = run_step(step, ctx, inputs)
    except (ServiceUnavailable, DataValidationError) as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    text = json.dumps(output, default=str)
    if xcom_file:
        os.makedirs(os.path.dirname(xcom_file) or ".", exist_ok=True)
        with open(xcom_file, "w") as f:
            f.write(text)
    sys.stdout.write(text + "\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run one step from the command line, as a Kubernetes pod does: `python -m sensorops.pipeline STEP ...`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    return exit_code(f"{PROG} {args.step}", lambda: _run(args))
