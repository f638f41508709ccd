"""Health checks for the platform's services, each through its real protocol.

`require("kafka", "s3")` at the top of a notebook fails within seconds, naming the service, its address and the
fix, instead of hanging on the first real call.
"""

from __future__ import annotations

from sensorops.platform.health import SERVICES, Health, check, require

__all__ = ["SERVICES", "Health", "check", "require"]
