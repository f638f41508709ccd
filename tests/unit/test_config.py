"""Settings: environment first, then `.env`, then defaults; secrets never in their repr."""

from __future__ import annotations

from sensorops import config


def test_environment_wins_over_defaults(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker.example:9092")
    monkeypatch.setenv("FLINK_REST_URL", "http://flink.example:8081/")
    s = config.load()
    assert s.kafka_bootstrap_servers == "broker.example:9092"
    assert s.flink_rest_url == "http://flink.example:8081"


def test_secrets_stay_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-value")
    monkeypatch.setenv("AIRFLOW_PASSWORD", "airflow-secret-value")
    text = repr(config.load())
    assert "s3-secret-value" not in text and "airflow-secret-value" not in text


def test_env_file_parsing(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# comment\nAWS_ACCESS_KEY_ID=abc\nQUOTED='x y'\n\nNOT A PAIR\n")
    assert config.read_env_file(env) == {"AWS_ACCESS_KEY_ID": "abc", "QUOTED": "x y"}
    assert config.read_env_file(tmp_path / "missing") == {}


def test_s3_host_is_the_endpoint_without_scheme(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.example:9000/")
    s = config.load()
    assert (s.s3_host, s.s3_secure) == ("s3.example:9000", True)
