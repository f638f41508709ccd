"""`python -m sensorops.cli` is the `sensorops` command."""

import sys

from sensorops.cli import main

sys.exit(main())
