"""Flink SQL smoke job: write a few rows as CSV to an s3:// path through the flink-s3-fs-hadoop plugin."""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

path = sys.argv[1]
t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
t_env.execute_sql(
    f"CREATE TABLE words (id INT, word STRING) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')"
)
t_env.execute_sql("INSERT INTO words VALUES (1, 'alpha'), (2, 'beta'), (3, 'gamma')").wait()
