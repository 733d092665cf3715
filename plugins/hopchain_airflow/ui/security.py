"""Who may see the HopChain pages: an authenticated Airflow user with READ access to every HopChain
DAG (``hopchain_nightly``, ``hopchain_annotations``, ``hopchain_release``, ``hopchain_labeling``),
asked of the configured
auth manager in one batch call. No token: 401 (Airflow's ``GetUserDep``); a token whose user lacks
DAG read: 403. Multi-team mode is not considered (the DAGs carry no team here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException

try:  # available inside the api-server; kept importable for unit tests outside Airflow
    from airflow.api_fastapi.core_api.security import GetUserDep
except ImportError:  # pragma: no cover - only outside an Airflow installation
    GetUserDep = Any  # type: ignore[misc,assignment]

HOPCHAIN_DAGS = ("hopchain_nightly", "hopchain_annotations", "hopchain_release", "hopchain_labeling")


def require_hopchain_read(user: GetUserDep) -> Any:
    """The user, when the auth manager grants GET on every HopChain DAG; 403 otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    requests: list[Any] = [{"method": "GET", "details": DagDetails(id=dag_id)} for dag_id in HOPCHAIN_DAGS]
    if not get_auth_manager().batch_is_authorized_dag(requests, user=user):
        raise HTTPException(403, "HopChain pages need read access to the HopChain DAGs")
    return user


HopChainReader = Annotated[Any, Depends(require_hopchain_read)]
