"""The stream job generated from a channel profile, on the live session cluster: the shipped SKAB slice replayed with
`sensorops replay --profile`, two profiles' jobs side by side (the inferred eight-channel profile, and three of its
channels with other windows), stream = batch on each one's feature archive, dead letters with their reasons, and
`sensorops train --profile` on what the stream archived."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaProducer

from sensorops import archive, events, features, flink, generator, kafka_io, profiles, replay, stream
from sensorops.cli import main as cli_main
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"
TS = "2020-03-09T10:20:00Z"


def _hostile(profile: profiles.Profile) -> list[tuple[bytes, str]]:
    """Records that are not valid events of `profile` (the SKAB one), with their reasons."""
    middle = {c.name: sum(c.range) / 2 for c in profile.channels}
    pressure_high = next(c.range[1] for c in profile.channels if c.name == "pressure")
    event = {"sensor_id": "hostile", "timestamp": TS, **middle, "is_anomaly": False, "anomaly_type": "none"}
    building = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=4, start=TS))[0]
    return [
        (
            json.dumps({**event, "pressure": pressure_high + 0.5}).encode(),
            "out_of_range",
        ),  # outside its channel's range
        (json.dumps({**event, "current": 1e10}).encode(), "out_of_range"),
        (json.dumps({**event, "voltage": "230"}).encode(), "wrong_type"),
        (json.dumps({k: v for k, v in event.items() if k != "sensor_id"}).encode(), "missing_field"),
        (json.dumps({**event, "timestamp": "9999-12-31T00:00:00Z"}).encode(), "out_of_range"),
        (json.dumps(building).encode(), "out_of_range"),  # building climate: 21 degrees is no SKAB motor's temperature
        (b"not json", "invalid_json"),
        (b"\xff\xfe{", "invalid_encoding"),
        (json.dumps({**event, "pad": "x" * 100_000}).encode(), "too_large"),
    ]


def _produce_raw(topic: str, values: list[bytes], servers: str) -> None:
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for value in values:
        producer.send(topic, value)
    producer.flush()
    producer.close()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, settings):
    """Two profiles' scratch jobs on the SKAB slice, running side by side; removed with their topics and archives."""
    folder = tmp_path_factory.mktemp("profiles")
    skab = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    three = {**skab.to_dict(), "name": "skab-three", "channels": skab.to_dict()["channels"][2:5]}
    three["features"] = {"window": 5, "long_window": 20, "lags": [3]}
    paths = [profiles.save(skab, folder / "skab.yaml"), profiles.save(profiles.from_dict(three), folder / "three.yaml")]
    tag = uuid.uuid4().hex[:8]
    cfgs = [
        stream.StreamJobConfig.scratch("test", f"{tag}-{i}", profile=str(path), checkpoint_interval_s=2)
        for i, path in enumerate(paths)
    ]
    run = {"paths": paths, "cfgs": cfgs, "hostile": _hostile(skab), "job_ids": []}
    try:
        for path, cfg in zip(paths, cfgs, strict=True):
            kafka_io.ensure_topic(cfg.source_topic, partitions=2)
            argv = ["replay", str(SKAB), "--profile", str(path), "--topic", cfg.source_topic, "--speed", "max"]
            assert cli_main(argv) == 0  # every row of the slice replayed
        _produce_raw(cfgs[0].source_topic, [v for v, _ in run["hostile"]], settings.kafka_bootstrap_servers)
        run["rows"] = len(replay.read_profile([SKAB], skab).events)
        for cfg in cfgs:
            job_id, started = stream.submit(cfg, fresh=True)
            assert started
            run["job_ids"].append(job_id)
        for job_id in run["job_ids"]:
            flink.wait_running(job_id, timeout=180)
        yield run
    finally:
        for cfg in cfgs:
            stream.remove(cfg)


def test_two_profiles_jobs_run_side_by_side(jobs):
    expected = [jobs["rows"] + len(jobs["hostile"]), jobs["rows"]]
    for job_id, n in zip(jobs["job_ids"], expected, strict=True):
        wait_until(lambda j=job_id: stream.status(job_id=j).records_in, lambda r, n=n: r >= n, timeout=180, interval=2)
    states = [stream.status(job_id=j) for j in jobs["job_ids"]]
    assert [(s.state, s.restarts) for s in states] == [("RUNNING", 0), ("RUNNING", 0)]


def _archived(cfg: stream.StreamJobConfig, n: int) -> pd.DataFrame:
    read = lambda: archive.read(f"{cfg.archive_path}/features").frame  # noqa: E731
    return wait_until(read, lambda f: len(f) >= n, timeout=180, interval=3, message=f"fewer than {n} archived rows")


@pytest.mark.parametrize("which", [0, 1], ids=["skab", "skab-three"])
def test_stream_features_equal_batch(jobs, which):
    cfg = jobs["cfgs"][which]
    fs = features.for_profile(profiles.load(jobs["paths"][which]))
    got = _archived(cfg, jobs["rows"])
    assert len(got) == jobs["rows"]
    assert set(fs.columns) <= set(got.columns)
    expected = fs.compute(replay.read_profile([SKAB], fs.profile).events)  # the same rows, in pandas
    merged = expected.merge(got, on=["sensor_id", "event_time"], suffixes=("_batch", "_stream"), validate="1:1")
    assert len(merged) == len(expected) == len(got)
    worst = {}
    for column in fs.columns[2:]:
        batch, streamed = merged[f"{column}_batch"], merged[f"{column}_stream"]
        if batch.dtype.kind == "f":
            same = np.isclose(batch, streamed.astype(float), rtol=1e-6, atol=1e-6, equal_nan=True)
            worst[column] = float(np.nanmax(np.abs(batch - streamed.astype(float)), initial=0.0))
        else:
            same = batch.astype(str).to_numpy() == streamed.astype(str).to_numpy()
        assert same.all(), f"{column} differs on {int((~same).sum())} rows"
    assert merged["is_anomaly_batch"].sum() > 0  # the labels came through
    largest = max(worst.values())
    print(f"{fs.profile.name}: {len(merged)} rows, {len(worst)} numeric columns, max |stream - batch| {largest:.3g}")


def test_dead_letters_carry_their_reasons(jobs):
    cfg, hostile = jobs["cfgs"][0], jobs["hostile"]
    read = lambda: kafka_io.read(cfg.dead_letter_topic, committed_only=True, timeout_s=20)  # noqa: E731
    dead = wait_until(read, lambda rows: len(rows) >= len(hostile), timeout=120, interval=2)
    assert sorted(d["reason"] for d in dead) == sorted(r for _, r in hostile)
    assert {d["payload"] for d in dead} == {events.dead_letter_text(v) for v, _ in hostile}
    assert kafka_io.read(jobs["cfgs"][1].dead_letter_topic, committed_only=True, timeout_s=5) == []


def test_aggregates_per_sensor_over_every_channel(jobs):
    cfg = jobs["cfgs"][0]
    read = lambda: kafka_io.read(cfg.aggregates_topic, committed_only=True, timeout_s=20)  # noqa: E731
    rows = wait_until(read, lambda r: len(r) > 0, timeout=120, interval=2)
    assert {r["level"] for r in rows} == {"sensor"}
    for channel in profiles.load(jobs["paths"][0]).channel_names:
        assert all(r[f"{channel}_min"] <= r[f"{channel}_mean"] <= r[f"{channel}_max"] for r in rows)


def test_train_on_what_the_stream_archived(jobs, capsys):
    cfg = jobs["cfgs"][0]
    _archived(cfg, jobs["rows"])
    prefix = cfg.archive_path.removeprefix(archive.ROOT + "/") + "/features"
    argv = ["train", "--profile", str(jobs["paths"][0]), "--start", "2020-03-09", "--prefix", prefix]
    assert cli_main([*argv, "--models", "logistic_regression", "--n-jobs", "1", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert f"read {jobs['rows']:,} rows" in out and "logistic_regression" in out
