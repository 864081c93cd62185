"""Augmentation of approved labels (back-translation, synonyms, span-safe NER edits).

Not available in this release: the package is reserved so that ``labelloop.augment`` imports resolve.
"""
