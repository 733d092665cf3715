"""Data validation at every stage boundary with Great Expectations 1.x (suites, runner, Data Docs).

* :mod:`expectations.suites` — the suites by name (manifest, quarantine, instances, questions,
  annotations, consensus, release); each expectation has a stable name and a severity from
  ``params.yaml`` (``validation.severity``).
* :mod:`expectations.custom` — custom GX expectations (RLE masks decode to their declared size).
* :mod:`expectations.runner` — :func:`~expectations.runner.validate`: run, save the result, build
  and upload Data Docs, raise on critical failures.
* :mod:`expectations.cli` — ``hopchain validate``.

Importing this package is cheap: great_expectations is imported only when a validation runs.
"""
