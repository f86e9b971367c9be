"""Segmentation, chunking, fusion and citation prompts: the pure functions."""

from __future__ import annotations

from ownlight.knowledge.chunking import chunk_text, cost
from ownlight.knowledge.citations import build_citation_prompt
from ownlight.knowledge.fusion import rrf
from ownlight.knowledge.segment import match_expression, terms
from ownlight.knowledge.types import Hit


def test_cjk_text_gets_unigrams_and_bigrams() -> None:
    assert terms("東京タワー") == ["東", "京", "タ", "ワ", "ー", "東京", "京タ", "タワ", "ワー"]
    assert terms("北京2008年") == ["北", "京", "北京", "2008", "年"]


def test_words_are_lowercased_and_cyrillic_gets_a_prefix_term() -> None:
    assert terms("Hello, WORLD") == ["hello", "world"]
    assert terms("столица") == ["столица", "стол\u00aa"]


def test_match_expression_quotes_user_input() -> None:
    assert match_expression(terms('a" OR b NEAR(')) == '"a" OR "or" OR "b" OR "near"'
    assert match_expression(['x"y']) == '"x""y"'
    assert match_expression(terms("  ...  ")) is None


def test_chunks_follow_headings_and_keep_exact_spans() -> None:
    text = "# Intro\n\nShort intro.\n\n## Details\n\n" + "A long sentence here. " * 200
    chunks = chunk_text(text, markdown=True)
    assert chunks[0].heading == "Intro" and chunks[0].text.endswith("Short intro.")
    assert all(c.heading == "Details" for c in chunks[1:]) and len(chunks) > 2
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert cost(chunk.text) <= 1600


def test_chunks_split_cjk_text_without_spaces_at_sentence_ends() -> None:
    text = "这是一个没有空格的句子。" * 300
    chunks = chunk_text(text)
    assert len(chunks) > 1
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_rrf_rewards_agreement() -> None:
    fused = rrf([[(1, 9.0), (2, 8.0)], [(2, 0.9), (3, 0.8)]])
    assert [item for item, _ in fused] == [2, 1, 3]


def test_citation_prompt_numbers_sources() -> None:
    hits = [
        Hit("doc-a", "Handbook", "hr", 7, "Leave is 25 days.", 0, 17, 0.03),
        Hit("doc-b", "Policy", "hr", 9, "Ask your manager.", 5, 22, 0.02, chunk=3),
    ]
    prompt = build_citation_prompt(hits)
    assert "[1] Handbook\nLeave is 25 days." in prompt.system
    assert "[2] Policy" in prompt.system
    assert prompt.citations[1] == {
        "index": 2, "document_id": "doc-b", "title": "Policy", "collection": "hr",
        "chunk": 3, "start": 5, "end": 22,
    }
