"""HopChain Airflow triggers."""
