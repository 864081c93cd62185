"""LabelLoop: pre-annotation, active learning and fine-tuning around a Label Studio instance.

The core package holds everything that is not a web or UI framework: labeling-config parsing,
the sentence/token encoder, the models the backend serves, uncertainty scores, the state store,
background training and the Label Studio client helpers. ``labelloop.backend`` adapts it to the
ML backend protocol that Label Studio speaks.
"""

__version__ = "0.1.0"
