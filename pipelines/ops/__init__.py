"""Operating the platform: deployment settings (``deploy``), health checks (``doctor``) and the Airflow REST
client (``airflow_api``). Production code may import these; the local dev stack is ``pipelines.stack``."""
