"""What the HopChain DAGs share: start date and task defaults (retries with backoff, timeouts)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


#: Overrides every DAG's first retry delay (seconds), e.g. for ``dag.test`` runs against services that are
#: down on purpose; read when the DAG file is parsed.
RETRY_DELAY_ENV = "HOPCHAIN_RETRY_DELAY_S"


def default_args(retry_delay_s: float, execution_timeout: timedelta) -> dict[str, Any]:
    """Task defaults: two retries with exponential backoff (capped at 10 min) and a hard timeout.
    ``$HOPCHAIN_RETRY_DELAY_S``, when set, replaces ``retry_delay_s``."""
    override = os.environ.get(RETRY_DELAY_ENV, "").strip()
    return {
        "owner": "data-ops",
        "retries": 2,
        "retry_delay": timedelta(seconds=float(override) if override else retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": execution_timeout,
    }
