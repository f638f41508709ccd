"""Where a profile's data lives, named in one place: its topics, its stream job, its archive prefix, its MLflow
experiment and registered model. The default profile keeps today's names; any other profile's carry its name:

    sensor-events.skab  sensor-features.skab  sensor-aggregates.skab  sensor-events-dlq.skab      (topics)
    s3://sensor-archive/profiles/skab/raw/...  s3://sensor-archive/profiles/skab/features/...    (archive)
    sensorops-stream-skab  sensor-anomaly-detection-skab  sensor-anomaly-detector-skab   (`per_profile`)
"""

from __future__ import annotations

from sensorops import config
from sensorops.profiles.model import Profile

ARCHIVE_FOLDER = "profiles"
"""Other profiles' archives live under `<archive bucket>/profiles/<name>/`, apart from the default's tables."""


def per_profile(name: str, profile: Profile, separator: str = "-") -> str:
    """A name of `profile`'s own: `name` itself for the default profile (nothing changes for it), suffixed with the
    profile's name for any other, so that topics, jobs and models of other channels never mix."""
    return name if profile.is_default else f"{name}{separator}{profile.name}"


def topic(base: str, profile: Profile) -> str:
    """`profile`'s topic of a kind (`config.FEATURES_TOPIC`, ...): `base` for the default profile, `base.NAME` else."""
    return per_profile(base, profile, ".")


def sensor_topic(profile: Profile) -> str:
    """The topic a profile's readings go to: the default one for the default profile, its own for any other
    (the running stream job reads the default topic, and must not take other channels for missing readings)."""
    return topic(config.SENSOR_TOPIC, profile)


def archive_prefix(profile: Profile) -> str:
    """The key prefix of `profile`'s archive in the archive bucket: raw events under `<prefix>/raw`, features under
    `<prefix>/features` ('' for the default profile: its tables are at the bucket's root)."""
    return "" if profile.is_default else f"{ARCHIVE_FOLDER}/{profile.name}"


def features_prefix(profile: Profile) -> str:
    """The key prefix of `profile`'s feature archive in the archive bucket (what `sensorops train --prefix` takes)."""
    return "/".join(p for p in (archive_prefix(profile), "features") if p)
