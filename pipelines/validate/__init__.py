"""Validate: the questions of a shard checked (Great Expectations, ``expectations/``) against its manifest and
instances before the push. Manifest, quarantine and instances are checked by the stages that write them."""
