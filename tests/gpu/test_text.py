from __future__ import annotations

import pytest

from gpu.text import chunk_text, split_sentences


def test_sentences_split_at_latin_and_cjk_punctuation() -> None:
    assert split_sentences("Hello there. How are you? Fine!") == [
        "Hello there.",
        "How are you?",
        "Fine!",
    ]
    assert split_sentences("你好。今天天气很好！我们走吧？") == [
        "你好。",
        "今天天气很好！",
        "我们走吧？",
    ]


def test_decimal_points_and_quotes_do_not_end_sentences() -> None:
    assert split_sentences('It costs 3.50 dollars. "Really?" she asked.') == [
        "It costs 3.50 dollars.",
        '"Really?"',
        "she asked.",
    ]


def test_short_sentences_are_packed_up_to_the_limit() -> None:
    text = "One. Two. Three. Four."
    assert chunk_text(text, max_chars=10) == ["One. Two.", "Three.", "Four."]
    assert chunk_text(text, max_chars=100) == [text]


def test_every_chunk_respects_the_limit_and_no_word_is_lost() -> None:
    sentence = "This is a fairly ordinary sentence with several words in it. "
    text = sentence * 40 + "A clause, another clause, and a third clause without any end " * 8
    chunks = chunk_text(text, max_chars=120)
    assert all(len(chunk) <= 120 for chunk in chunks)
    assert " ".join(chunks).split() == text.split()


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    chunks = chunk_text("x" * 25, max_chars=10)
    assert chunks == ["x" * 10, "x" * 10, "x" * 5]


def test_cjk_chunks_are_joined_without_spaces() -> None:
    assert chunk_text("你好。再见。", max_chars=50) == ["你好。再见。"]


def test_empty_text_has_no_chunks_and_the_limit_must_be_positive() -> None:
    assert chunk_text("   \n ") == []
    with pytest.raises(ValueError):
        chunk_text("hi", max_chars=0)
