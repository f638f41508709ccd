"""sensorops: real-time MLOps on IoT sensor data.

The shared library behind the notebooks, the Airflow DAG and the `sensorops` CLI.
Importing it has no side effects.
"""

__version__ = "0.1.0"
