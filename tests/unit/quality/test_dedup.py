import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelloop.quality.dedup import NearDuplicateIndex, content_key, duplicate_groups, jaccard, shingles

BASE = "The central bank raised interest rates by half a point on Thursday, surprising most analysts."


def test_exact_duplicates_ignore_case_space_and_unicode_form():
    assert content_key(BASE) == content_key("  the CENTRAL bank raised interest rates by half a point on "
                                            "Thursday,\nsurprising most analysts.")
    assert content_key("ﬁne") == content_key("fine")
    assert content_key(BASE) != content_key(BASE.replace("half", "a quarter of"))


def test_near_duplicates_are_found_and_checked_exactly():
    index = NearDuplicateIndex()
    index.add("a", BASE)
    index.add("b", "A completely different sentence about football and the weather in spring.")
    near = BASE.replace("Thursday", "Friday")
    found = index.find(near)
    assert [f[0] for f in found] == ["a"]
    assert found[0][1] == pytest.approx(jaccard(shingles(BASE), shingles(near)))
    assert index.find("Nothing like the others at all, just some new words here today.") == []


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "omega", "sigma"]), min_size=1, max_size=12))
def test_groups_are_transitive_and_cover_exact_copies(words):
    text = " ".join(words)
    texts = [text, text.upper(), "unrelated " * 3 + "text entirely", text + "  "]
    groups = duplicate_groups(texts)
    assert groups[0] == groups[1] == groups[3]
    assert len(groups) == 4


def test_short_texts_use_character_shingles():
    assert duplicate_groups(["good movie", "Good movie!", "bad food"]).tolist()[:2] == [0, 0]
