"""The Airflow operators the DAGs build from the library. Only Airflow (the DAG processor, the workers) imports this
module: it needs the `airflow` extra, which a step's pod does not install."""

from __future__ import annotations

import os
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import Variable, get_current_context, task
from kubernetes.client import models as k8s

from sensorops.pipeline.context import DEFAULT_IMAGE, IMAGE_ENV, NAMESPACE_ENV, SECRET_ENV, scheduled_run_goes_on
from sensorops.pipeline.pod import (
    CONTAINER_SECURITY_CONTEXT,
    NAMESPACE,
    POD_SECURITY_CONTEXT,
    RESOURCES,
    SCRATCH,
    SCRATCH_SIZE,
    SERVICE_ACCOUNT,
)


def pod_operator(task_id: str, cmds: list[str], arguments: list[str], **task_args: Any) -> Any:
    """A KubernetesPodOperator running `cmds arguments` in the project's image with `pipeline.pod`'s settings, its
    XCom read from `pod.XCOM_FILE`: what each task of the DAGs is in Kubernetes mode (`task_args`: doc, retries,
    timeout)."""
    secret = os.environ.get(SECRET_ENV, "sensorops-settings")
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"sensorops-{task_id.replace('_', '-')}",
        namespace=os.environ.get(NAMESPACE_ENV, NAMESPACE),
        image=os.environ.get(IMAGE_ENV, DEFAULT_IMAGE),
        cmds=cmds,
        arguments=arguments,
        env_vars={"HOME": SCRATCH},
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=secret))],
        service_account_name=SERVICE_ACCOUNT,
        automount_service_account_token=False,
        security_context=POD_SECURITY_CONTEXT,
        container_security_context=CONTAINER_SECURITY_CONTEXT,
        xcom_sidecar_container_security_context=CONTAINER_SECURITY_CONTEXT,
        container_resources=k8s.V1ResourceRequirements(**RESOURCES),
        volumes=[k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=SCRATCH_SIZE))],
        volume_mounts=[k8s.V1VolumeMount(name="scratch", mount_path=SCRATCH)],
        do_xcom_push=True,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        **task_args,
    )


def schedule_switch(variable: str) -> Any:
    """The first task of a scheduled DAG, `enabled`: a scheduled run goes on only while the Airflow Variable
    `variable` is `on` (Admin > Variables, or `airflow variables set VARIABLE on`), and skips every task after it
    otherwise; a run started by hand or by another DAG always goes on. It runs in the Airflow worker in both modes."""

    @task.short_circuit(task_id="enabled", doc_md=f"Scheduled runs go on only while the Variable `{variable}` is `on`.")
    def enabled() -> bool:
        run_type = get_current_context()["dag_run"].run_type
        return scheduled_run_goes_on(run_type, Variable.get(variable, default="off"))

    return enabled()
