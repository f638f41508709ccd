"""The alert rules (deploy/local/prometheus/rules.yml) under `promtool test rules`, and a test of that test: a wrong
expectation must fail it. promtool comes with Debian's Prometheus, unpacked by the platform's install code (which
this fetches once if `make up` has not run yet)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sensorops import config
from sensorops.platform import layout

RULES = layout.DEPLOY / "prometheus"


def run(promtool: Path, *args: str, cwd: Path = RULES) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid(promtool):
    result = run(promtool, "check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_promtool_cases(promtool):
    result = run(promtool, "test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case():
    alerts = set(re.findall(r"- alert: (\w+)", (RULES / "rules.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "rules_test.yml").read_text()))
    assert alerts == tested


def test_a_wrong_expectation_fails(promtool, tmp_path):
    """The job that disappears is expected to raise nothing: promtool must say that it did."""
    cases = (RULES / "rules_test.yml").read_text()
    wrong = cases.replace(
        "- exp_labels: {severity: critical, job_name: gone}", "- exp_labels: {severity: critical, job_name: other}"
    )
    assert wrong != cases
    (tmp_path / "rules.yml").write_text((RULES / "rules.yml").read_text())
    (tmp_path / "rules_test.yml").write_text(wrong)
    result = run(promtool, "test", "rules", "rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FlinkJobNotRunning" in result.stdout + result.stderr and 'job_name="gone"' in result.stdout + result.stderr


def test_the_rules_name_the_pipelines_topics():
    """The dead-letter rule compares the topics that `config` names; renaming one there must show here."""
    rules = (RULES / "rules.yml").read_text()
    assert f'topic="{config.DEAD_LETTER_TOPIC}"' in rules
    assert f'topic="{config.SENSOR_TOPIC}"' in rules
