"""Four-way human verification in Label Studio 1.23 (open-source edition).

The platform, not Label Studio, enforces the acceptance rule (see DESIGN.md "Acceptance rule"):
Label Studio's POST annotations API accepts a fifth annotation, a second one by the same user and
unknown fields, and its stored counters (``total_annotations``, ``is_labeled``) go wrong under
concurrent submissions. So:

* **completion** is decided by counting distinct ``completed_by`` of non-cancelled annotations in
  the annotations themselves (:mod:`pipelines.annotation.completion`);
* **every annotation is validated** and refused ones are kept with their reason
  (:mod:`pipelines.annotation.validate`);
* **consensus** uses the first four distinct annotators per question, one answer each
  (:mod:`pipelines.annotation.consensus`).

Project granularity: **one Label Studio project per pipeline** (``annotation.project_title``),
not one per batch. Annotators keep a single queue that never changes; each task carries its
``question_id`` (the idempotency key: a question is pushed at most once per project) and a
``batch`` key (the run id that pushed it), and completion is polled per batch through a Data
Manager filter on ``data.batch``. Questions left pending at a batch's deadline simply stay in the
project and are decided by a later pull — nothing is lost.

Nothing here imports Airflow; the Airflow side (hook, deferrable trigger) lives in
``plugins/hopchain_airflow``.
"""
