"""Phoenix channel frames as Supabase Realtime's clients send and expect them.

vsn 1.0.0 (the Python client): JSON objects `{topic, event, payload, ref, join_ref}`.
vsn 2.0.0 (realtime-js's default): JSON arrays `[join_ref, ref, topic, event, payload]`,
plus binary frames for broadcasts a client sends; the relay only reads their header,
to answer them, since it relays broadcasts from the database alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VSN_1 = "1.0.0"
VSN_2 = "2.0.0"
SUPPORTED_VSNS = (VSN_1, VSN_2)

TOPIC_PREFIX = "realtime:"
PHOENIX_TOPIC = "phoenix"

# Layout of a vsn 2.0.0 binary "user broadcast push" (kind 3): kind, then the lengths of
# join_ref, ref, topic, event and metadata, then the payload encoding, then those fields.
_USER_BROADCAST_PUSH = 3
_USER_BROADCAST_PUSH_HEADER = 7


class FrameError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Frame:
    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None


def _ref(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise FrameError(f"a ref must be a string, got {value!r}")


def _frame(topic: object, event: object, payload: object, ref: object, join_ref: object) -> Frame:
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    return Frame(topic, event, payload, _ref(ref), _ref(join_ref))


def decode_text(vsn: str, text: str) -> Frame:
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if vsn == VSN_2:
        if not isinstance(message, list) or len(message) != 5:
            raise FrameError("a vsn 2.0.0 frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = message
        return _frame(topic, event, payload, ref, join_ref)
    if not isinstance(message, dict):
        raise FrameError("a vsn 1.0.0 frame is an object")
    return _frame(
        message.get("topic"),
        message.get("event"),
        message.get("payload"),
        message.get("ref"),
        message.get("join_ref"),
    )


def decode_binary(vsn: str, data: bytes) -> Frame:
    """The addressing of a binary broadcast push; its payload is not read."""
    if vsn != VSN_2 or len(data) < _USER_BROADCAST_PUSH_HEADER:
        raise FrameError("binary frames are only vsn 2.0.0 broadcast pushes")
    if data[0] != _USER_BROADCAST_PUSH:
        raise FrameError(f"unknown binary frame kind {data[0]}")
    join_ref_len, ref_len, topic_len, event_len = data[1:5]
    offset = _USER_BROADCAST_PUSH_HEADER
    fields: list[str] = []
    for length in (join_ref_len, ref_len, topic_len, event_len):
        if offset + length > len(data):
            raise FrameError("binary frame shorter than its header says")
        fields.append(data[offset : offset + length].decode("utf-8", errors="replace"))
        offset += length
    join_ref, ref, topic, user_event = fields
    return Frame(topic, "broadcast", {"event": user_event}, ref or None, join_ref or None)


def encode(vsn: str, frame: Frame) -> str:
    if vsn == VSN_2:
        body: Any = [frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload]
    else:
        body = {
            "topic": frame.topic,
            "event": frame.event,
            "payload": frame.payload,
            "ref": frame.ref,
            "join_ref": frame.join_ref,
        }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def reply(to: Frame, status: str, response: dict[str, Any]) -> Frame:
    return Frame(
        to.topic, "phx_reply", {"status": status, "response": response}, to.ref, to.join_ref
    )


def refusal(to: Frame, reason: str) -> Frame:
    return reply(to, "error", {"reason": reason})


def system_error(topic: str, join_ref: str | None, message: str) -> Frame:
    """What Supabase pushes before it shuts a channel down (token expired, permission
    revoked): clients surface it as a channel error."""
    payload = {
        "extension": "system",
        "status": "error",
        "message": message,
        "channel": topic.removeprefix(TOPIC_PREFIX),
    }
    return Frame(topic, "system", payload, None, join_ref)


def channel_closed(topic: str, join_ref: str | None) -> Frame:
    """Phoenix's notice that a channel process ended; clients drop the channel."""
    return Frame(topic, "phx_close", {}, join_ref, join_ref)


def broadcast(topic: str, event: str, payload: Any, message_id: str) -> Frame:
    """A broadcast from the database, as Supabase Realtime's JSON serializers send it."""
    body = {"type": "broadcast", "event": event, "payload": payload, "meta": {"id": message_id}}
    return Frame(topic, "broadcast", body)
