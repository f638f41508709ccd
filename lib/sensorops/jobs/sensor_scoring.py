"""Entry point of the scoring job for `flink run -py`: builds the job from its settings and submits it.

The job is Flink SQL around a pandas UDF (the model and the alert rule), which the TaskManager runs in Python worker
processes of the project's virtualenv.
"""

import logging
import sys

from sensorops import scoring

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    scoring.run_job(scoring.parse_job_args(sys.argv[1:]))
