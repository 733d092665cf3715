"""Registers the HopChain Airflow plugin: the status page and review workspace (FastAPI app), a UI nav
entry (Browse → HopChain) and a "HopChain" tab on every DAG run's page that opens the questions of
that run (the UI fills ``{DAG_ID}`` and ``{RUN_ID}`` into the ``href`` of a ``dag_run`` view)."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin


class HopChainPlugin(AirflowPlugin):
    name = "hopchain"

    # built lazily: the dag-processor and scheduler never import the routes
    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        from hopchain_airflow.ui.app import create_app

        return [{"app": create_app(), "url_prefix": "/hopchain", "name": "HopChain status"}]

    external_views = [
        {
            "name": "HopChain",
            "href": "/hopchain/",
            "destination": "nav",
            "category": "browse",
            "url_route": "hopchain",
        },
        {
            "name": "HopChain",
            "href": "/hopchain/questions?run={RUN_ID}&dag={DAG_ID}",
            "destination": "dag_run",
            "url_route": "hopchain-run",
        },
    ]
