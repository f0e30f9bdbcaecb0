"""Splitting long texts into sentence-sized chunks for synthesis.

TTS models degrade (drift, skipped words, runaway generation) on very long inputs and a
chunked text can be generated as a batch, so long texts are cut at sentence
boundaries, then short sentences are packed back together up to `max_chars`.
"""

from __future__ import annotations

import re

# Sentence ends in the product languages: Latin/Cyrillic punctuation followed by
# whitespace, or CJK full-width punctuation (which is not followed by a space).
_SENTENCE_END = re.compile(
    r"(?<=[.!?…;][\"'”’)\]])\s+|(?<=[.!?…;])\s+|(?<=[。！？；][」』”’）])|(?<=[。！？；])(?![」』”’）])"
)
# Where to cut a sentence that is itself too long, best first.
_CLAUSE_END = re.compile(r"(?<=[,:，、：])\s*")
_WHITESPACE = re.compile(r"\s+")

DEFAULT_MAX_CHARS = 250


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones dropped."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def _split_oversized(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces = [p for p in _CLAUSE_END.split(sentence) if p.strip()]
    if len(pieces) == 1:
        pieces = sentence.split(" ") if " " in sentence else list(sentence)
        joiner = " " if " " in sentence else ""
    else:
        joiner = " "
    out: list[str] = []
    current = ""
    for piece in pieces:
        piece = piece.strip()
        candidate = f"{current}{joiner}{piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            out.append(current)
        if len(piece) > max_chars:
            # No natural cut point at all (e.g. one enormous word): cut hard.
            out.extend(piece[i : i + max_chars] for i in range(0, len(piece), max_chars))
            current = ""
        else:
            current = piece
    if current:
        out.append(current)
    return out


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Cut `text` into chunks of at most `max_chars` characters, at sentence
    boundaries where possible, packing consecutive short sentences together."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    normalised = _WHITESPACE.sub(" ", text).strip()
    if not normalised:
        return []
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(normalised):
        for piece in _split_oversized(sentence, max_chars):
            separator = "" if _ends_with_cjk(current) else " "
            candidate = f"{current}{separator}{piece}" if current else piece
            if len(candidate) <= max_chars:
                current = candidate
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _ends_with_cjk(text: str) -> bool:
    return bool(text) and text[-1] in "。！？；」』”’）"
