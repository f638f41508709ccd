"""The stream job generated from a channel profile: its names, its SQL and its UDF, without a cluster. The default
profile's job stays as it was (`test_stream_job.py`)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sensorops import archive, config, events, features, profiles, stream
from sensorops.cli import stream as stream_cli
from sensorops.errors import UserError
from sensorops.stream import job

SERVERS = "127.0.0.1:9092"
SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


@pytest.fixture(scope="module")
def skab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    return profiles.save(profile, tmp_path_factory.mktemp("profile") / "skab.yaml")


def _sql(cfg: stream.StreamJobConfig) -> str:
    sql = stream.statements(cfg)
    return "\n".join([sql.source, sql.parse, *sql.views, *sql.inserts])


def test_the_default_profile_keeps_its_names():
    for cfg in (
        stream.StreamJobConfig(bootstrap_servers=SERVERS),
        stream.StreamJobConfig(profile=profiles.DEFAULT_NAME, bootstrap_servers=SERVERS),
        stream.StreamJobConfig(profile=profiles.default(), bootstrap_servers=SERVERS),
    ):
        assert (cfg.name, cfg.group_id, cfg.archive_path) == (
            stream.DEFAULT_JOB_NAME,
            stream.DEFAULT_JOB_NAME,
            archive.ROOT,
        )
        topics = (config.SENSOR_TOPIC, config.FEATURES_TOPIC, config.AGGREGATES_TOPIC, config.DEAD_LETTER_TOPIC)
        assert cfg.topics == topics
        assert cfg.profile_spec == {} and cfg.event_format == events.DEFAULT_FORMAT
        assert _sql(cfg) == _sql(stream.StreamJobConfig(bootstrap_servers=SERVERS))


def test_a_profile_names_its_job_topics_and_archive(skab_file: Path):
    cfg = stream.StreamJobConfig(profile=str(skab_file), bootstrap_servers=SERVERS)
    assert (cfg.name, cfg.group_id) == ("sensorops-stream-skab", "sensorops-stream-skab")
    assert cfg.topics == (
        "sensor-events.skab",
        "sensor-features.skab",
        "sensor-aggregates.skab",
        "sensor-events-dlq.skab",
    )
    assert cfg.source_topic == profiles.sensor_topic(cfg.channel_profile)  # where `replay --profile` sends
    assert cfg.archive_path == f"{archive.ROOT}/profiles/skab"
    assert (
        f"s3://{config.ARCHIVE_BUCKET}/{profiles.features_prefix(cfg.channel_profile)}"
        == f"{cfg.archive_path}/features"
    )
    given = stream.StreamJobConfig(
        profile=skab_file, bootstrap_servers=SERVERS, name="mine", features_topic="f", archive_path="s3://b/p/"
    )
    assert (given.name, given.features_topic, given.archive_path, given.source_topic) == (
        "mine",
        "f",
        "s3://b/p",
        "sensor-events.skab",
    )
    scratch = stream.StreamJobConfig.scratch("test", "abc", profile=skab_file, bootstrap_servers=SERVERS)
    assert scratch.topics == ("test-abc-events", "test-abc-features", "test-abc-aggregates", "test-abc-dlq")
    assert scratch.channel_profile.name == "skab"


def test_the_job_on_the_cluster_needs_no_profile_file(tmp_path: Path, skab_file: Path):
    copy = tmp_path / "p.yaml"
    copy.write_text(skab_file.read_text())
    cfg = stream.StreamJobConfig(profile=str(copy), bootstrap_servers=SERVERS)
    copy.unlink()
    again = stream.parse_job_args(["--config-json", cfg.to_json()])
    assert again == cfg and again.channel_profile == cfg.channel_profile
    assert _sql(again) == _sql(cfg)
    with pytest.raises(UserError, match="no such profile"):
        stream.StreamJobConfig(profile=str(copy), bootstrap_servers=SERVERS)


def test_a_profiles_sql_reads_its_channels_and_computes_its_features(skab_file: Path):
    cfg = stream.StreamJobConfig(profile=str(skab_file), bootstrap_servers=SERVERS)
    fs = features.for_profile(profiles.load(skab_file))
    sql = stream.statements(cfg)
    views = "\n".join(sql.views)
    channels = ", ".join(f"`{c}`" for c in fs.event_columns)
    assert f"CREATE TEMPORARY VIEW events AS\nSELECT {channels}, event_ms, proc_time," in views
    assert f"CREATE TEMPORARY VIEW feature_rows AS {fs.flink_sql('events')}" in sql.views
    assert "'topic' = 'sensor-events.skab'" in sql.source
    assert "location" not in views and "building" not in views and "comfort_index" not in views
    sink = next(v for v in sql.views if v.startswith("CREATE TEMPORARY TABLE features_sink"))
    assert re.findall(r"^  `(\w+)` ([^,\n]+)", sink, re.M) == [
        (c, job.PROFILE_TYPES.get(c, "DOUBLE")) for c in fs.columns
    ]
    archived = next(v for v in sql.views if v.startswith("CREATE TEMPORARY TABLE features_archive"))
    assert f"'path' = '{archive.ROOT}/profiles/skab/features'" in archived
    declared = archived.split(") PARTITIONED BY")[0]
    assert re.findall(r"`(\w+)` [A-Z]", declared) == [*fs.columns, "dt", "hour"]  # with its partitions
    assert f"'path' = '{archive.ROOT}/profiles/skab/raw'" in views


def test_a_profiles_aggregates_are_per_sensor_over_every_channel(skab_file: Path):
    cfg = stream.StreamJobConfig(profile=str(skab_file), bootstrap_servers=SERVERS)
    inserts = [i for i in stream.statements(cfg).inserts if "aggregates_sink" in i]
    assert len(inserts) == 1 and "'sensor', sensor_id" in inserts[0]  # no building: a profile's events are flat
    for channel in cfg.channel_profile.channel_names:  # quoted: SKAB's `current` is an SQL keyword
        assert f"MIN(`{channel}`), MAX(`{channel}`), AVG(`{channel}`)" in inserts[0]
    sink = next(v for v in stream.statements(cfg).views if "aggregates_sink" in v)
    assert "`current_std` DOUBLE" in sink and "'topic' = 'sensor-aggregates.skab'" in sink
    no_aggregates = stream.StreamJobConfig(profile=str(skab_file), bootstrap_servers=SERVERS, aggregates=False)
    assert not any(
        "aggregates" in s for s in [*stream.statements(no_aggregates).views, *stream.statements(no_aggregates).inserts]
    )


def test_no_channel_takes_a_column_of_the_job():
    for name in job.JOB_COLUMNS:
        with pytest.raises(UserError, match="not an event field"):
            profiles.from_dict({"name": "p", "channels": [{"name": name}]})
    with pytest.raises(UserError, match="no double underscore"):  # `x__prev` is the feature SQL's previous `x`
        profiles.from_dict({"name": "p", "channels": [{"name": "x"}, {"name": "x__prev"}]})
    for name in ("current", "value", "hour_count"):  # SQL keywords are fine: the job quotes them
        profiles.from_dict({"name": "p", "channels": [{"name": name}]})


def test_the_udf_output_of_a_profile_converts_to_its_declared_types(skab_file: Path):
    cfg = stream.StreamJobConfig(profile=str(skab_file), bootstrap_servers=SERVERS)
    udf = job.parse_events_udf(cfg)
    declared = dict(re.findall(r"`(\w+)` (\w+)", udf._result_type))  # ROW<`reason` STRING, ...>
    arrow = {"STRING": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
    middles = {c.name: sum(c.range) / 2 for c in cfg.channel_profile.channels}
    valid = {"sensor_id": "s", "timestamp": "2020-03-09T10:14:33Z", **middles, "current": None}
    payloads = [json.dumps(valid).encode(), b"not json", json.dumps({**valid, "voltage": 1e6}).encode()]
    frame = stream.parse_events(pd.Series(payloads), pd.Series([None] * 3), fmt=cfg.event_format)
    assert frame["reason"].tolist() == [None, "invalid_json", "out_of_range"]
    assert list(frame.columns) == ["reason", "dead_letter", *cfg.event_format.fields]
    assert list(declared) == list(frame.columns)
    assert declared["is_anomaly"] == "BOOLEAN" and declared["current"] == "DOUBLE"
    for name in frame.columns:
        kind = declared[name]
        pa.Array.from_pandas(frame[name], mask=frame[name].isnull(), type=arrow[kind])


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stream_cli.register(parser.add_subparsers())
    return parser.parse_args(["stream", *argv])


def test_stream_submit_profile_submits_that_profiles_job(skab_file: Path, monkeypatch, capsys):
    submitted = []
    monkeypatch.setattr(stream, "submit", lambda cfg, fresh=False: submitted.append(cfg) or ("jid", True))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", SERVERS)
    assert stream_cli.run_submit(_cli("submit", "--profile", str(skab_file))) == 0
    assert stream_cli.run_submit(_cli("submit")) == 0
    assert [c.name for c in submitted] == ["sensorops-stream-skab", stream.DEFAULT_JOB_NAME]
    assert submitted[0].channel_profile.name == "skab" and submitted[1].channel_profile.is_default
    assert submitted[1].topics[0] == config.SENSOR_TOPIC and submitted[1].archive_path == archive.ROOT
    out = capsys.readouterr().out
    assert "reads sensor-events.skab" in out and f"{archive.ROOT}/profiles/skab/features" in out
    names = [
        stream_cli._job_name(_cli(a, *p)) for a in ("status", "cancel") for p in ((), ("--profile", str(skab_file)))
    ]
    assert names == [stream.DEFAULT_JOB_NAME, "sensorops-stream-skab"] * 2
    assert stream_cli._job_name(_cli("cancel", "--profile", str(skab_file), "--name", "other")) == "other"
