"""HopChain stage library: pure Python, no Airflow imports (Airflow pieces live in plugins/)."""

__version__ = "0.1.0"
