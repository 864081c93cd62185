"""Labeling configs for the project kinds LabelLoop knows, built from a list of labels."""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from labelloop.errors import ConfigError

TEMPLATES = ("classification", "multi-label", "sentiment", "ner", "pos", "coreference", "prompt-response")
# Universal Dependencies' part-of-speech tags (https://universaldependencies.org/u/pos/).
UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
DEFAULT_LABELS = {"sentiment": ("Positive", "Negative", "Neutral"), "pos": UPOS, "coreference": ("Mention",)}


def label_config(template: str, labels: Sequence[str] = (), *, text_field: str = "text") -> str:
    """The XML labeling config for ``template`` with ``labels`` (sentiment and pos have defaults).

    ``pos`` is dense word tagging: a ``<Labels dense="true">`` control whose every word gets one tag, over a
    text selected by whole words. ``coreference`` marks mentions (``labels`` are their types) and links those
    that refer to the same thing with a ``coref`` relation.
    """
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    labels = tuple(dict.fromkeys(label.strip() for label in labels if label.strip())) or DEFAULT_LABELS.get(template, ())
    if template != "prompt-response" and not labels:
        raise ConfigError(f"the {template} template needs labels, e.g. --labels A,B,C")
    if not text_field.isidentifier():
        raise ConfigError(f"text field {text_field!r} must be a plain name (letters, digits, underscores)")
    value = quoteattr("$" + text_field)
    if template == "prompt-response":
        return (f'<View>\n  <Header value="Prompt"/>\n  <Text name="prompt" value={value}/>\n'
                '  <Header value="Response"/>\n'
                '  <TextArea name="response" toName="prompt" rows="6" editable="true" maxSubmissions="1"/>\n</View>')
    if template == "ner":
        items = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
        return f'<View>\n  <Labels name="label" toName="text">{items}\n  </Labels>\n  <Text name="text" value={value}/>\n</View>'
    if template == "coreference":
        items = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
        return (f'<View>\n  <Relations>\n    <Relation value="coref"/>\n  </Relations>\n'
                f'  <Labels name="mention" toName="text">{items}\n  </Labels>\n'
                f'  <Text name="text" value={value} granularity="word"/>\n</View>')
    if template == "pos":
        items = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
        return (f'<View>\n  <Labels name="pos" toName="text" dense="true" showInline="true">{items}\n  </Labels>\n'
                f'  <Text name="text" value={value} granularity="word"/>\n</View>')
    choice = ' choice="multiple"' if template == "multi-label" else ' choice="single"'
    name = "sentiment" if template == "sentiment" else "label"
    items = "".join(f"\n    <Choice value={quoteattr(label)}/>" for label in labels)
    return (f'<View>\n  <Text name="text" value={value}/>\n'
            f'  <Choices name="{name}" toName="text"{choice} showInline="true">{items}\n  </Choices>\n</View>')
