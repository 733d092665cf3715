"""HopChain Airflow ui."""
