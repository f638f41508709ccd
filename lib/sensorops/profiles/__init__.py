"""Channel profiles: a data set's channels and CSV layout as data (YAML), so that any sensor data can enter the
pipeline.

`model` (the profile, YAML, the default building-climate profile), `labels` (label encodings), `cells` (reading
numbers and timestamps), `files` (folders, one sensor per file, the separator), `infer` (propose a profile from CSV
files), `wire` (the event schema generated from a profile, serialisation, what a valid event is), `names` (its
topics, stream job, archive prefix and models: where its data lives).
"""

from sensorops.profiles.cells import NULL_TOKENS, blank_nulls, parse_numbers, parse_timestamps
from sensorops.profiles.files import csv_files, sensor_ids, sniff_delimiter
from sensorops.profiles.infer import Inference, infer
from sensorops.profiles.labels import ENCODINGS, detect_encoding, parse_label
from sensorops.profiles.model import DEFAULT_NAME, Channel, Profile, default, from_dict, load, save
from sensorops.profiles.names import archive_prefix, features_prefix, per_profile, sensor_topic, topic
from sensorops.profiles.wire import event_format, json_schema, serialize, to_dicts, validate

__all__ = [
    "DEFAULT_NAME",
    "ENCODINGS",
    "NULL_TOKENS",
    "Channel",
    "Inference",
    "archive_prefix",
    "blank_nulls",
    "Profile",
    "csv_files",
    "default",
    "detect_encoding",
    "event_format",
    "features_prefix",
    "from_dict",
    "infer",
    "json_schema",
    "load",
    "parse_label",
    "per_profile",
    "parse_numbers",
    "parse_timestamps",
    "save",
    "sensor_ids",
    "sensor_topic",
    "serialize",
    "sniff_delimiter",
    "to_dicts",
    "topic",
    "validate",
]
