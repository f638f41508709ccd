"""`python -m sensorops.pipeline STEP ...`: one step of the DAG, as a Kubernetes pod runs it (see `pod`)."""

from sensorops.pipeline.pod import main

if __name__ == "__main__":
    raise SystemExit(main())
