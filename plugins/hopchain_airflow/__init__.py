"""Airflow side of the HopChain platform: hooks, operators, triggers and the UI plugin.

This folder is Airflow's plugins folder, which every Airflow component puts on ``sys.path``,
so the triggerer can import ``hopchain_airflow.triggers.*`` by class path.
"""
