"""Scoring the live stream: the champion (and a challenger) score every feature row, alert episodes per sensor, and
live model quality against the labels the events carry.

`job` defines the Flink job, `control` runs it on the session cluster, `models` follows a registry alias in each
worker, `alerts` is the episode rule, `detection` evaluates scores and alerts against the truth.
"""

from sensorops.scoring.control import JOB_FILE, cancel, prepare, remove, status, submit
from sensorops.scoring.job import DEFAULT_JOB_NAME, ROLES, ScoringJobConfig, parse_job_args, run_job
from sensorops.scoring.models import LiveModel, decide

__all__ = [
    "DEFAULT_JOB_NAME",
    "JOB_FILE",
    "ROLES",
    "LiveModel",
    "ScoringJobConfig",
    "cancel",
    "decide",
    "parse_job_args",
    "prepare",
    "remove",
    "run_job",
    "status",
    "submit",
]
