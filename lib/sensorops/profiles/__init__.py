"""Channel profiles: a data set's channels and CSV layout as data (YAML), so that any sensor data can enter the
pipeline.

`model` (the profile, YAML, the default building-climate profile), `labels` (label encodings), `cells` (reading
numbers and timestamps), `files` (folders, one sensor per file, the separator), `infer` (propose a profile from CSV
files), `wire` (the event schema generated from a profile, serialisation, the topic).
"""

from sensorops.profiles.cells import NULL_TOKENS, blank_nulls, parse_numbers, parse_timestamps
from sensorops.profiles.files import csv_files, sensor_ids, sniff_delimiter
from sensorops.profiles.infer import Inference, infer
from sensorops.profiles.labels import ENCODINGS, detect_encoding, parse_label
from sensorops.profiles.model import DEFAULT_NAME, Channel, Profile, default, from_dict, load, save
from sensorops.profiles.wire import json_schema, sensor_topic, serialize, to_dicts, validate

__all__ = [
    "DEFAULT_NAME",
    "ENCODINGS",
    "NULL_TOKENS",
    "Channel",
    "Inference",
    "blank_nulls",
    "Profile",
    "csv_files",
    "default",
    "detect_encoding",
    "from_dict",
    "infer",
    "json_schema",
    "load",
    "parse_label",
    "parse_numbers",
    "parse_timestamps",
    "save",
    "sensor_ids",
    "sensor_topic",
    "serialize",
    "sniff_delimiter",
    "to_dicts",
    "validate",
]
