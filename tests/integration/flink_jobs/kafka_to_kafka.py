"""Flink SQL smoke job: read a bounded Kafka topic, upper-case a column, write another topic."""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

source, sink, servers = sys.argv[1:4]
t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
kafka = f"'connector' = 'kafka', 'properties.bootstrap.servers' = '{servers}', 'format' = 'json'"
t_env.execute_sql(
    f"CREATE TABLE src (id INT, word STRING) WITH ({kafka}, 'topic' = '{source}', "
    "'properties.group.id' = 'smoke', 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
)
t_env.execute_sql(f"CREATE TABLE dst (id INT, word STRING) WITH ({kafka}, 'topic' = '{sink}')")
t_env.execute_sql("INSERT INTO dst SELECT id, UPPER(word) FROM src").wait()
