"""The multi-hop question engine: scenes, hop programs, the program generator, the VLM writer,
ablation variants, leakage checks and difficulty calibration.

Pure Python (numpy, pycocotools, PIL); never imports Airflow. Semantics of every op and margin are
written down in ``docs/hop-programs.md``.
"""
