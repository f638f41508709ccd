"""Entry point of the stream benchmark's reference job for `flink run -py` (`bench.stream.run_reference`): the
stream job's feature SQL with Flink's native JSON source and no Python, the engine's limit for the same work."""

import logging
import sys

from sensorops import stream
from sensorops.bench import stream as bench_stream

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    bench_stream.run_reference(stream.parse_job_args(sys.argv[1:]))
