"""The models the backend serves: fast heads on a frozen encoder, retrained in seconds on CPU.

- :class:`ChoicesModel` maps a sentence vector to probabilities over a ``<Choices>`` control's labels.
  Untrained, it is zero-shot: cosine similarity to each label's name (or ``hint``). Trained, it is a
  linear head anchored to those zero-shot weights, so a handful of labels moves it gently and many
  labels move it far.
- :class:`SpansModel` tags words for a ``<Labels>`` control: a linear BIO tagger on token vectors
  with class weights (so it does not collapse to all-``O``), plus a gazetteer of annotated mentions.
- :class:`WordTagsModel` gives every word one tag (part of speech, ``<Labels dense="true">``): a softmax
  over each word's vector and hashed spelling features of the word and its neighbours.

Serving sees every model through one text protocol: classifiers answer ``predict_proba(texts)`` and
taggers ``predict_spans(texts)``, and both learn with ``fit(texts, targets)``. :class:`HeadClassifier`,
:class:`HeadTagger` and :class:`WordTagger` put the heads behind it; :class:`TransformerModel`, a fine-tuned
run, speaks it natively. Once a fine-tuned encoder serves, :class:`TunedHead` keeps the loop learning on top of it: a head
on the fine-tuned model's own features, starting from its classifier and retrained after each annotation.
:class:`SetFitClassifier` (contrastive fine-tuning of the encoder plus a head) speaks the same protocol.
:class:`Features` builds the heads, and saves and loads every served model (plain ``.npz`` + JSON files, no
pickles) through one table of saved types: each model writes itself and reads itself back.

The package: :mod:`~labelloop.models.heads`, :mod:`~labelloop.models.adapters` (the text protocols),
:mod:`~labelloop.models.setfit`, :mod:`~labelloop.models.transformer` and :mod:`~labelloop.models.features`.
"""

from labelloop.models.adapters import (
    HeadClassifier,
    HeadTagger,
    Saved,
    TextClassifier,
    TextTagger,
    TunedHead,
    WordTagger,
    fit_word_tags,
    word_vectors,
)
from labelloop.models.features import SAVED, Features
from labelloop.models.heads import (
    ZERO_SHOT_CACHE,
    ZERO_SHOT_SCALE,
    ZERO_SHOT_THRESHOLD,
    ChoicesModel,
    FineTunedClassifier,
    SpansModel,
    WordTagsModel,
    lexical_features,
)
from labelloop.models.setfit import SetFitClassifier
from labelloop.models.transformer import TransformerModel

__all__ = ["SAVED", "ZERO_SHOT_CACHE", "ZERO_SHOT_SCALE", "ZERO_SHOT_THRESHOLD", "ChoicesModel", "Features",
           "FineTunedClassifier", "HeadClassifier", "HeadTagger", "Saved", "SetFitClassifier", "SpansModel",
           "TextClassifier", "TextTagger", "TransformerModel", "TunedHead", "WordTagger", "WordTagsModel",
           "fit_word_tags", "lexical_features", "word_vectors"]
