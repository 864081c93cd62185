"""Augmentation of approved labels that keeps labels and entity spans correct.

Every :class:`~labelloop.augment.base.Augmenter` rewrites text only *between* entity spans, so a NER
variant's spans are re-computed and still cover exactly their entity text. Originals are never
modified; every variant carries provenance (source, method, parameters, seed).
Optional dependencies come with ``pip install 'labelloop[augment]'``.
"""
