"""Instance segmentation: SAM3 (text prompts), SAM2 (box prompts; sam2 package or transformers),
and the ``annotations`` backend (existing COCO instance annotations) → the instances table."""
