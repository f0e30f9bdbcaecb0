"""Segments (finished chunks) crossing from the Modal GPU app to the listener while the
request still runs.

A spawned call cannot stream its result: modal 1.6.4 refuses `.spawn` of a generator
function (_functions.py `_Function.spawn`: "Cannot `spawn` a generator function."),
and `FunctionCall.get` returns only the final value. So the GPU code puts each segment
into a `modal.Queue`, in a partition named by the request's ticket, and the Modal
engine reads that partition while it waits for the call. What a Queue allows
(modal 1.6.4 queue.py `_Queue`): partitions are independent FIFOs with keys of 1 to 64
bytes, an item is at most 1 MiB, a partition is cleared `partition_ttl` seconds after
its last put, and `get` removes what it returns. A segment larger than one item
travels in parts.

Items are dicts of builtins, like the rest of the wire (gpu/jobs.py)."""

from __future__ import annotations

import logging
import math
from typing import Any

from gpu.engine import Audio, Segment

log = logging.getLogger(__name__)

# Under the 1 MiB item limit with room for the dict around the bytes.
PART_BYTES = 512 * 1024
# Longer than a request may run (the app's job timeout), so a listener that re-attaches
# to a running call still finds what is left.
PARTITION_TTL_SECONDS = 60 * 60


def queue_name(app_name: str) -> str:
    return f"{app_name}-segments"


def to_parts(segment: Segment) -> list[dict[str, Any]]:
    wav = segment.audio.wav
    parts = max(1, math.ceil(len(wav) / PART_BYTES))
    return [
        {
            "index": segment.index,
            "count": segment.count,
            "part": part,
            "parts": parts,
            "sample_rate": segment.audio.sample_rate,
            "duration_seconds": segment.audio.duration_seconds,
            "bytes": wav[part * PART_BYTES : (part + 1) * PART_BYTES],
        }
        for part in range(parts)
    ]


class SegmentAssembler:
    """Puts parts back into segments, in the order they were put. A segment whose first
    parts someone else read (a listener that died after taking them, before a
    re-attached one took over) is dropped: the final file still carries it."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._expected: tuple[int, int] | None = None  # (segment index, next part)

    def add(self, item: object) -> Segment | None:
        if not isinstance(item, dict):
            log.warning("a malformed segment item from the GPU app was dropped")
            return None
        try:
            index, count = int(item["index"]), int(item["count"])
            part, parts = int(item["part"]), int(item["parts"])
            piece = bytes(item["bytes"])
            sample_rate, seconds = int(item["sample_rate"]), float(item["duration_seconds"])
        except (KeyError, TypeError, ValueError):
            log.warning("a malformed segment item from the GPU app was dropped")
            return None
        if part == 0:
            self._pieces = []
        elif self._expected != (index, part):
            log.warning("segment %d arrived without its first parts: dropped", index)
            self._expected = None
            return None
        self._pieces.append(piece)
        self._expected = (index, part + 1)
        if part + 1 < parts:
            return None
        self._expected = None
        return Segment(index, count, Audio(b"".join(self._pieces), sample_rate, seconds))
