"""Entry point of the stream job for `flink run -py`: builds the SQL job from its settings and submits it.

The Flink client runs this file with the project's Python (`python.client.executable`). The job is Flink SQL plus
the project's Java UDF (`stream.native`) and one Python UDF (`stream.parse_events`), which the TaskManager runs in
Python worker processes of the same virtualenv.
"""

import logging
import sys

from sensorops import stream

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    stream.run_job(stream.parse_job_args(sys.argv[1:]))
