"""What the HopChain DAGs share: start date and task defaults (retries with backoff, timeouts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def default_args(retry_delay_s: float, execution_timeout: timedelta) -> dict[str, Any]:
    """Task defaults: two retries with exponential backoff (capped at 10 min) and a hard timeout."""
    return {
        "owner": "data-ops",
        "retries": 2,
        "retry_delay": timedelta(seconds=retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": execution_timeout,
    }
