"""Ingest: list raw images, decode and normalise them, write a sharded manifest + quarantine.

Pure Python (no Airflow). See :mod:`pipelines.ingest.decode` for what is accepted and
:mod:`pipelines.ingest.stage` for the shard life cycle.
"""
