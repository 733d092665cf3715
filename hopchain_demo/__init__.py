"""The HopChain demo, kept out of the product: sample images with COCO instances
(:mod:`hopchain_demo.samples`) and a nightly build run through the local stack
(:mod:`hopchain_demo.run`). Run it with ``hopchain-demo`` or ``python -m hopchain_demo``.

It depends on :mod:`pipelines`; nothing in :mod:`pipelines` imports it.
"""
