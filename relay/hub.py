"""Who is joined to which topic, and the fan-out of each relayed message to them.

Fan-out never waits on a socket: each subscriber takes an encoded frame into its own
bounded queue, synchronously, and its own writer drains that queue. A slow or dead
client therefore only ever delays itself."""

from __future__ import annotations

from typing import Protocol

from relay import frames
from relay.feed import RelayedMessage


class Subscriber(Protocol):
    @property
    def vsn(self) -> str: ...

    def enqueue(self, text: str) -> None:
        """Take a frame without waiting (and drop the client itself if it cannot)."""


class TopicHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self.published = 0

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(topic, set()).add(subscriber)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[topic]

    def subscriber_count(self, topic: str | None = None) -> int:
        if topic is not None:
            return len(self._subscribers.get(topic, ()))
        return sum(len(s) for s in self._subscribers.values())

    def publish(self, message: RelayedMessage) -> int:
        """Hand `message` to everyone joined to its topic; returns how many."""
        subscribers = self._subscribers.get(message.topic)
        self.published += 1
        if not subscribers:
            return 0
        frame = frames.broadcast(
            frames.TOPIC_PREFIX + message.topic, message.event, message.payload, message.id
        )
        encoded: dict[str, str] = {}
        # A copy: a subscriber that overflows leaves the set while we go through it.
        for subscriber in list(subscribers):
            vsn = subscriber.vsn
            text = encoded.get(vsn)
            if text is None:
                text = encoded[vsn] = frames.encode(vsn, frame)
            subscriber.enqueue(text)
        return len(subscribers)
