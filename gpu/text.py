"""Splitting long texts into sentence-sized chunks for synthesis.

TTS models degrade (drift, skipped words, runaway generation) on very long inputs and a
chunked text can be generated as a batch, so long texts are cut at sentence
boundaries, then short sentences are packed back together up to a limit.

The limit depends on the script: a chunk should hold about 15-20 seconds of speech,
and a character of Chinese carries far more speech than a Latin letter. Scripts
written without spaces (Chinese, Japanese) are also joined without spaces: a space
inside Japanese or Chinese text is not a pause the model should read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Sentence ends in the product languages: Latin/Cyrillic punctuation followed by
# whitespace, or CJK full-width punctuation (which is not followed by a space).
_SENTENCE_END = re.compile(
    r"(?<=[.!?…;][\"'”’)\]])\s+|(?<=[.!?…;])\s+|(?<=[。！？；][」』”’）])|(?<=[。！？；])(?![」』”’）])"
)
# Where to cut a sentence that is itself too long, best first.
_CLAUSE_END = re.compile(r"(?<=[,:，、：])\s*")
_WHITESPACE = re.compile(r"\s+")

# Characters of scripts written without spaces between words: CJK punctuation, kana,
# Han ideographs (with extension A and compatibility forms) and full-width forms.
# Hangul is not here: Korean separates words with spaces.
_UNSPACED = re.compile(
    "[\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
)
_KANA = re.compile("[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff]")
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL = re.compile("[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
# Whitespace between two unspaced characters is a line break or typing habit, not a
# word gap: it is dropped.
_SPACE_INSIDE_UNSPACED = re.compile(f"(?<={_UNSPACED.pattern})\\s+(?={_UNSPACED.pattern})")

# Qwen3-TTS's speech codec runs at 12 frames per second (the "12Hz" models); one
# generated token per frame.
CODEC_FRAMES_PER_SECOND = 12


@dataclass(frozen=True)
class Script:
    """How a script is spoken, as far as chunking and generation budgets care.

    `chars_per_second` is a typical reading rate; `slowest_chars_per_second` is the
    slow end of careful reading (what a generation budget must still allow)."""

    name: str
    chars_per_second: float
    slowest_chars_per_second: float

    @property
    def max_chunk_chars(self) -> int:
        """About 17 seconds of speech at the typical rate."""
        return int(CHUNK_SECONDS * self.chars_per_second)

    @property
    def first_chunk_chars(self) -> int:
        """About 3 seconds of speech at the typical rate: a short sentence or a phrase."""
        return int(FIRST_CHUNK_SECONDS * self.chars_per_second)


CHUNK_SECONDS = 17.0
# A text longer than one chunk starts with a short one, generated alone, so its first
# audio is ready after one small model call (streamed to the listener as a segment)
# while the rest is rendered. Where the rest runs in one batched call, the first audio
# comes after first / (first + longest later chunk) of the job: 3 s against 17 s keeps
# that near 15 % where a batch costs about what one chunk does (a GPU).
FIRST_CHUNK_SECONDS = 3.0
# Reading rates in characters per second (spaces and punctuation included for spaced
# scripts): English and other Latin/Cyrillic text is read at about 150 words a minute,
# about 15 characters a second; Mandarin at 4-5 syllables (= characters) a second;
# Japanese at 7-8 morae a second, most of them one kana each, with kanji worth more;
# Korean at about 6 syllable blocks a second, plus the spaces between words.
LATIN = Script("latin", chars_per_second=15.0, slowest_chars_per_second=8.0)
CHINESE = Script("chinese", chars_per_second=4.5, slowest_chars_per_second=2.5)
JAPANESE = Script("japanese", chars_per_second=7.0, slowest_chars_per_second=3.5)
KOREAN = Script("korean", chars_per_second=7.0, slowest_chars_per_second=4.0)

DEFAULT_MAX_CHARS = LATIN.max_chunk_chars  # 255

# The generation budget of a chunk (see `token_budget`): its duration at the slowest
# rate, times this margin, plus a floor for very short chunks (a one-word chunk still
# has lead-in and trailing silence).
BUDGET_MARGIN = 1.5
BUDGET_FLOOR_SECONDS = 3.0


def detect_script(text: str) -> Script:
    """The script most of `text`'s letters belong to. Any kana makes it Japanese (a
    Japanese text is mostly kanji plus kana; a Chinese one has no kana)."""
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    others = sum(1 for ch in text if ch.isalpha()) - han - kana - hangul
    if kana and han + kana >= max(hangul, others):
        return JAPANESE
    if han and han >= max(hangul, others):
        return CHINESE
    if hangul and hangul >= others:
        return KOREAN
    return LATIN


def token_budget(text: str, script: Script | None = None) -> int:
    """`max_new_tokens` for one chunk: codec frames for `text` read at the slowest
    plausible rate of its script, with a margin, plus a floor:

        ceil((len(text) / slowest_chars_per_second * BUDGET_MARGIN
              + BUDGET_FLOOR_SECONDS) * CODEC_FRAMES_PER_SECOND)

    e.g. 255 Latin characters -> ceil((255 / 8 * 1.5 + 3) * 12) = 610 frames (51 s of
    audio) instead of qwen-tts's default of 2048 (170 s) for a chunk meant to be 17 s."""
    spoken = script or detect_script(text)
    seconds = len(text) / spoken.slowest_chars_per_second * BUDGET_MARGIN + BUDGET_FLOOR_SECONDS
    return math.ceil(seconds * CODEC_FRAMES_PER_SECOND)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, empty ones dropped."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


def _unspaced(ch: str) -> bool:
    return bool(_UNSPACED.fullmatch(ch))


def _join(left: str, right: str) -> str:
    """Two pieces of one text side by side: no space where either side of the seam is
    a character of an unspaced script."""
    if not left:
        return right
    if _unspaced(left[-1]) or _unspaced(right[0]):
        return left + right
    return f"{left} {right}"


def _words(sentence: str) -> list[str]:
    """The smallest pieces a sentence may be cut into: words where the text has
    spaces, single characters of unspaced runs."""
    pieces: list[str] = []
    for word in sentence.split(" "):
        if word and any(_unspaced(ch) for ch in word):
            pieces.extend(word)
        elif word:
            pieces.append(word)
    return pieces


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    current = ""
    for piece in pieces:
        candidate = _join(current, piece)
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            out.append(current)
        current = piece
    if current:
        out.append(current)
    return out


def _split_oversized(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses = [p.strip() for p in _CLAUSE_END.split(sentence) if p.strip()]
    out: list[str] = []
    for clause in _pack(clauses, max_chars):
        if len(clause) <= max_chars:
            out.append(clause)
            continue
        for piece in _pack(_words(clause), max_chars):
            # No natural cut point at all (e.g. one enormous word): cut hard.
            out.extend(piece[i : i + max_chars] for i in range(0, len(piece), max_chars))
    return out


def chunk_limit(text: str) -> int:
    """The chunk size suited to `text`'s script."""
    return detect_script(text).max_chunk_chars


def _take_first(pieces: list[str], max_chars: int) -> tuple[str, list[str]]:
    """The leading pieces that fit in `max_chars` (at least one), and the rest."""
    current = ""
    for taken, piece in enumerate(pieces):
        candidate = _join(current, piece)
        if current and len(candidate) > max_chars:
            return current, pieces[taken:]
        current = candidate
    return current, []


def speech_chunks(text: str, max_chars: int | None = None) -> list[str]:
    """`chunk_text` for speaking: a text of more than one chunk starts with a short
    chunk (about one sentence, `Script.first_chunk_chars`, cut at a clause where the
    sentence is longer), so its first audio comes after one small model call."""
    script = detect_script(text)
    limit = max_chars if max_chars is not None else script.max_chunk_chars
    return chunk_text(text, limit, first_max_chars=min(limit, script.first_chunk_chars))


def chunk_text(
    text: str, max_chars: int | None = None, *, first_max_chars: int | None = None
) -> list[str]:
    """Cut `text` into chunks of at most `max_chars` characters (default: the limit
    for its script), at sentence boundaries where possible, packing consecutive short
    sentences together. Spaces are never added inside unspaced scripts. With
    `first_max_chars`, a text longer than `max_chars` gets a first chunk of at most
    that many characters."""
    if max_chars is not None and max_chars < 1:
        raise ValueError("max_chars must be positive")
    if first_max_chars is not None and first_max_chars < 1:
        raise ValueError("first_max_chars must be positive")
    normalised = _WHITESPACE.sub(" ", _SPACE_INSIDE_UNSPACED.sub("", text)).strip()
    if not normalised:
        return []
    limit = max_chars if max_chars is not None else chunk_limit(normalised)
    sentences = split_sentences(normalised)
    if first_max_chars is None or first_max_chars >= limit or len(normalised) <= limit:
        pieces: list[str] = []
        for sentence in sentences:
            pieces.extend(_split_oversized(sentence, limit))
        return _pack(pieces, limit)
    # The first sentence in pieces that fit the first chunk, the rest as usual.
    pieces = _split_oversized(sentences[0], first_max_chars)
    for sentence in sentences[1:]:
        pieces.extend(_split_oversized(sentence, limit))
    first, rest = _take_first(pieces, first_max_chars)
    return [first, *_pack(rest, limit)]
