from __future__ import annotations

import math

import pytest

from gpu.text import (
    CHINESE,
    DEFAULT_MAX_CHARS,
    JAPANESE,
    KOREAN,
    LATIN,
    chunk_text,
    detect_script,
    speech_chunks,
    split_sentences,
    token_budget,
)


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


def test_japanese_clauses_are_rejoined_without_spaces() -> None:
    sentence = "これは、とても長い文で、いくつもの節があり、最後まで続きます。"
    chunks = chunk_text(sentence * 3, max_chars=20)
    assert all(" " not in chunk and len(chunk) <= 20 for chunk in chunks)
    assert "".join(chunks) == sentence * 3


def test_line_breaks_inside_cjk_text_are_not_read_as_spaces() -> None:
    assert chunk_text("今日は\nいい天気ですね。\n散歩に行きましょう。") == [
        "今日はいい天気ですね。散歩に行きましょう。"
    ]
    # Latin words across a line break keep their space; so does a Latin word in CJK text.
    assert chunk_text("Hello\nworld.") == ["Hello world."]


def test_korean_keeps_the_spaces_between_its_words() -> None:
    text = "안녕하세요. 오늘은 날씨가 정말 좋네요. 같이 산책하러 갈까요?"
    chunks = chunk_text(text, max_chars=20)
    assert " ".join(chunks) == text
    assert detect_script(text) is KOREAN


def test_each_script_gets_a_limit_that_suits_its_speech_rate() -> None:
    assert detect_script("The quick brown fox.") is LATIN
    assert detect_script("Привет, как дела?") is LATIN
    assert detect_script("今天天气很好，我们去公园散步吧。") is CHINESE
    assert detect_script("東京は日本の首都です。") is JAPANESE
    # Roughly the same speaking time per chunk: far fewer characters of Chinese.
    assert CHINESE.max_chunk_chars < JAPANESE.max_chunk_chars < LATIN.max_chunk_chars
    assert LATIN.max_chunk_chars == DEFAULT_MAX_CHARS
    chinese = "今天天气很好，我们去公园散步吧。" * 20
    chunks = chunk_text(chinese)
    assert all(len(chunk) <= CHINESE.max_chunk_chars for chunk in chunks)
    assert "".join(chunks) == chinese
    assert len(chunk_text("The quick brown fox jumps. " * 8)) == 1  # 216 chars of English


def test_the_token_budget_follows_the_documented_formula() -> None:
    english = "x" * 255
    assert token_budget(english) == math.ceil((255 / 8.0 * 1.5 + 3.0) * 12) == 610
    assert token_budget("Hi.") == math.ceil((3 / 8.0 * 1.5 + 3.0) * 12)
    # A Chinese chunk of the same speaking time gets a comparable budget.
    chinese = "天" * CHINESE.max_chunk_chars
    assert abs(token_budget(chinese) - token_budget("x" * LATIN.max_chunk_chars)) < 150
    # Always well under qwen-tts's default of 2048 for a chunk of the script's size.
    for script in (LATIN, CHINESE, JAPANESE, KOREAN):
        assert token_budget("a" * script.max_chunk_chars, script) < 2048


def test_a_long_text_starts_with_a_short_first_chunk_and_loses_nothing() -> None:
    text = " ".join(f"Sentence {n} is part of a long text." for n in range(30))
    chunks = speech_chunks(text)
    assert len(chunks[0]) <= LATIN.first_chunk_chars < len(chunks[1])
    assert chunks[0] == "Sentence 0 is part of a long text."
    assert all(len(chunk) <= LATIN.max_chunk_chars for chunk in chunks)
    assert " ".join(chunks) == text


def test_a_long_first_sentence_is_cut_at_a_clause_for_the_first_chunk() -> None:
    first = (
        "When the evening came and the lamps were lit, "
        "the fishermen gathered their nets and walked slowly home to their families."
    )
    text = first + " " + " ".join(["Then the night fell over the town."] * 10)
    chunks = speech_chunks(text)
    assert chunks[0] == "When the evening came and the lamps were lit,"
    assert " ".join(chunks) == text


def test_a_text_of_one_chunk_is_not_split_for_a_first_chunk() -> None:
    text = "A short text. It fits in one chunk, so one model call speaks it all."
    assert speech_chunks(text) == chunk_text(text) == [text]


def test_the_first_chunk_of_unspaced_text_is_short_and_joined_without_spaces() -> None:
    text = "今日はとても良い天気です。" * 12
    chunks = speech_chunks(text)
    assert len(chunks[0]) <= JAPANESE.first_chunk_chars
    assert "".join(chunks) == text and " " not in "".join(chunks)
