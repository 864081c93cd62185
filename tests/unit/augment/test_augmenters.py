"""Contract every augmenter passes, span-safety properties, and the pipeline's hygiene."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("nlpaug")

from labelloop.augment.augmenters import BackTranslationAugmenter, FillMaskAugmenter, MentionSwapAugmenter, RandomWordAugmenter  # noqa: E402
from labelloop.augment.base import PROTECT  # noqa: E402
from labelloop.augment.cli import word_diff  # noqa: E402
from labelloop.augment.pipeline import LabelFilter, augment_records, variant_tasks  # noqa: E402
from labelloop.augment.translate import TranslationEngine  # noqa: E402

CLS = [{"text": "The plot was gripping and the actors were wonderful in every single scene.", "label": "pos"},
       {"text": "A dull and slow film that wastes a talented cast on a silly script.", "label": "neg"},
       {"text": "Follow @studio for #premiere news at https://example.com from 12/05 onwards today.", "label": "pos"}]
NER = [{"text": "Yesterday Anna Berg flew from Oslo to Madrid with her old friend Tom Hale for work.",
        "spans": [{"start": 10, "end": 19, "label": "PER"}, {"start": 30, "end": 34, "label": "LOC"},
                  {"start": 38, "end": 44, "label": "LOC"}, {"start": 65, "end": 73, "label": "PER"}]},
       {"text": "Luis Ortega met Sara Kim in Lisbon last spring after the long conference ended.",
        "spans": [{"start": 0, "end": 11, "label": "PER"}, {"start": 16, "end": 24, "label": "PER"},
                  {"start": 28, "end": 34, "label": "LOC"}]}]


class ShoutingEngine(TranslationEngine):
    """A stand-in 'translation' that changes words but keeps placeholders, to test masking."""

    pivot = "test"

    def round_trip(self, texts):
        return [t.replace("the", "that").replace("a ", "one ") for t in texts]


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from labelloop.encoder import resolve_model_path

    path = tmp_path_factory.mktemp("mlm")
    tok = AutoTokenizer.from_pretrained(resolve_model_path(""))
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def augmenters(tiny_mlm):
    from labelloop.augment.translate import BergamotEngine

    out = [RandomWordAugmenter("swap", 0.3), RandomWordAugmenter("delete", 0.3),
           BackTranslationAugmenter(ShoutingEngine()), MentionSwapAugmenter(NER, p=1.0),
           FillMaskAugmenter(tiny_mlm, "substitute", 0.3), FillMaskAugmenter(tiny_mlm, "insert", 0.3)]
    try:
        out.append(BackTranslationAugmenter(BergamotEngine()))
    except ImportError:
        pass
    return out


@pytest.fixture(scope="module")
def all_augmenters(tiny_mlm):
    return augmenters(tiny_mlm)


def entity_texts(record):
    return [(record["text"][s["start"] : s["end"]], s["label"]) for s in record["spans"]]


def test_contract_every_augmenter(all_augmenters):
    for aug in all_augmenters:
        for records in (CLS, NER):
            before = copy.deepcopy(records)
            variants = aug.augment(records, n=2, seed=7)
            assert records == before, f"{aug.name} modified its input"
            assert variants == aug.augment(records, n=2, seed=7), f"{aug.name} is not reproducible"
            for v in variants:
                prov = v["provenance"]
                assert prov["method"] == aug.name and prov["source"].startswith("sha1 ") and prov["seed"] == 7
                assert isinstance(prov["params"], dict)
                source = next(r for r in records if r["text"] != v["text"] and
                              (r.get("label"), len(r.get("spans", []))) == (v.get("label"), len(v.get("spans", []))))
                assert v["text"] != source["text"]
                if "spans" in v:
                    ends = [(s["start"], s["end"]) for s in v["spans"]]
                    assert ends == sorted(ends) and all(0 <= a < b <= len(v["text"]) for a, b in ends)
                    assert [s["label"] for s in v["spans"]] == [s["label"] for s in source["spans"]]
                    if aug.name != "mention-swap":
                        assert entity_texts(v) == entity_texts(source), aug.name
                    else:
                        for text, label in entity_texts(v):
                            assert text in aug.mentions[label]
                else:
                    assert v["label"] == source["label"]
                for token in PROTECT.findall(source["text"]):
                    assert token in v["text"], (aug.name, token)


def test_backtranslation_restores_masked_tokens_and_drops_lossy_round_trips():
    class LosingEngine(TranslationEngine):
        pivot = "x"

        def round_trip(self, texts):
            return [t.split("ZX")[0] + " and more words" for t in texts]

    record = [{"text": "Follow @studio for the #premiere at https://example.com on 12/05.", "label": "pos"}]
    kept = BackTranslationAugmenter(ShoutingEngine()).augment(record, seed=1)
    assert [v["text"] for v in kept] == ["Follow @studio for that #premiere at https://example.com on 12/05."]
    assert BackTranslationAugmenter(LosingEngine()).augment(record, seed=1) == []


def test_hf_translation_engine_runs_a_seq2seq_pair(tmp_path):
    from transformers import AutoTokenizer, MarianConfig, MarianMTModel

    from labelloop.augment.translate import HFTranslationEngine
    from labelloop.encoder import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(""))
    config = MarianConfig(vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                          pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.pad_token_id,
                          eos_token_id=tok.sep_token_id, max_position_embeddings=64)
    for name in ("fwd", "bwd"):
        MarianMTModel(config).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    engine = HFTranslationEngine(str(tmp_path / "fwd"), str(tmp_path / "bwd"), max_new_tokens=8)
    out = engine.round_trip(["hello world", "a second sentence"])
    assert len(out) == 2 and all(isinstance(t, str) for t in out)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alpha", "beta", "gamma", "delta", "Oslo", "Anna", "x1"]), st.booleans()),
                min_size=1, max_size=15), st.integers(0, 5))
def test_spans_survive_any_word_edit(words, seed):
    text, spans = "", []
    for word, is_entity in words:
        start = len(text) + (1 if text else 0)
        text = f"{text} {word}" if text else word
        if is_entity:
            spans.append({"start": start, "end": len(text), "label": "E"})
    record = {"text": text, "spans": spans}
    for aug in (RandomWordAugmenter("swap", 0.5), RandomWordAugmenter("delete", 0.5)):
        for v in aug.augment([record], n=2, seed=seed):
            assert entity_texts(v) == entity_texts(record)


def test_pipeline_never_augments_or_leaks_test_items_and_drops_duplicates():
    test = [CLS[0]]
    variants, report = augment_records(CLS + [dict(CLS[1])], [RandomWordAugmenter("swap", 0.3)], n=3, seed=0,
                                       test_records=test, progress=False)
    sources = {v["provenance"]["source"] for v in variants}
    from labelloop.augment.base import record_id

    assert record_id(CLS[0]) not in sources and report.excluded_test == 1
    texts = [v["text"] for v in variants]
    assert len(texts) == len(set(texts)) and CLS[0]["text"] not in texts
    assert report.dropped["duplicate"] + report.dropped["near duplicate"] > 0 or len(texts) == 6


def test_label_filter_drops_variants_the_model_confidently_relabels():
    def proba(texts):
        return np.array([[0.05, 0.95] if "dull" in t else [0.5, 0.5] for t in texts])

    variants, report = augment_records(CLS[:2], [RandomWordAugmenter("swap", 0.3)], seed=0, progress=False,
                                       label_filter=LabelFilter(proba, ["neg", "pos"], 0.9))
    assert all(v["label"] == "pos" for v in variants)
    assert report.dropped["model disagrees with the label"] == 1


def test_variants_become_label_studio_tasks_with_predictions():
    from label_studio_sdk.label_interface import LabelInterface

    from labelloop.templates import label_config

    config = label_config("ner", ["PER", "LOC"])
    variants = MentionSwapAugmenter(NER, p=1.0).augment(NER, seed=0)
    tasks = variant_tasks(variants, config)
    interface = LabelInterface(config)
    for task in tasks:
        assert task["data"]["augmented"] is True and task["data"]["augmentation_method"] == "mention-swap"
        assert interface.validate_prediction({"result": task["predictions"][0]["result"]})


def test_word_diff_marks_changes():
    assert word_diff("a b c", "a x c") == "a [-b-] {+x+} c"
    assert random.Random(0).random() == random.Random(0).random()


def test_the_summary_counts_the_test_items_even_when_none_were_among_the_sources():
    from labelloop.augment.pipeline import AugmentReport

    report = AugmentReport(sources=4, excluded_test=0, test_items=1)
    assert report.summary().startswith("4 source records; 1 test items never augmented nor matched by a variant;")


def test_similarity_filter_drops_variants_that_strayed_from_their_source_but_never_mention_swaps():
    from labelloop.augment.pipeline import SimilarityFilter

    vectors = {"a good film": [1.0, 0.0], "a fine film": [0.95, 0.1], "a good information technology": [0.2, 1.0],
               "Maria went home": [1.0, 0.0], "Li went home": [0.0, 1.0]}
    embed = lambda texts: np.array([vectors[t] for t in texts])  # noqa: E731
    sources = {"task 1": "a good film", "task 2": "Maria went home"}

    def variant(text, source, method):
        return {"text": text, "provenance": {"source": source, "method": method}}

    verdicts = SimilarityFilter(embed, 0.9).keep(sources, [
        variant("a fine film", "task 1", "wordnet-synonym"), variant("a good information technology", "task 1",
                                                                     "wordnet-synonym"),
        variant("Li went home", "task 2", "mention-swap")])
    assert verdicts == [True, False, True]


def test_augment_records_counts_what_the_similarity_filter_drops():
    from labelloop.augment.base import Augmenter
    from labelloop.augment.pipeline import SimilarityFilter

    class Shout(Augmenter):
        name = "shout"

        def rewrite(self, text, rng):
            return text.upper() + " NOW"

    far = SimilarityFilter(lambda texts: np.array([[1.0, 0.0] if t.islower() else [0.0, 1.0] for t in texts]))
    kept, report = augment_records([{"text": "a calm sentence", "label": "x"}], [Shout()], similarity=far,
                                   progress=False)
    assert kept == [] and report.dropped == {"far from its source (cosine < 0.9)": 1}
