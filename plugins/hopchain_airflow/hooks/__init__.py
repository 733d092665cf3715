"""HopChain Airflow hooks."""
