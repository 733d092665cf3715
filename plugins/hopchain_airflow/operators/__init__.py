"""HopChain Airflow operators."""
