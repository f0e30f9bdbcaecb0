"""A FAKE of the parts of Modal's SDK the Modal engine uses (`Cls.from_name`, a
method's `.spawn.aio`, `FunctionCall.from_id`, `.get.aio(timeout=)`, `.cancel.aio()`),
because Modal cannot be reached from tests. It keeps Modal's real exception classes
(`modal.exception`) and its polling contract: `get` raises the builtin TimeoutError
while a call is still running. Deployed methods are async Python handlers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import modal.exception

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class _Aio:
    """Modal exposes async variants as `.aio` attributes of its methods."""

    def __init__(self, function: Callable[..., Awaitable[Any]]) -> None:
        self.aio = function


@dataclass
class FakeFunctionCall:
    object_id: str
    task: asyncio.Task[Any]
    payload: dict[str, Any]
    cancelled: bool = False
    polls: int = 0
    get: _Aio = field(init=False)
    cancel: _Aio = field(init=False)

    def __post_init__(self) -> None:
        self.get = _Aio(self._get)
        self.cancel = _Aio(self._cancel)

    async def _get(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (Modal's signature)
        self.polls += 1
        if self.cancelled:
            raise modal.exception.InputCancellation("input was cancelled")
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if self.cancelled:
            raise modal.exception.InputCancellation("input was cancelled")
        if not done:
            raise TimeoutError()
        return self.task.result()

    async def _cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True
        self.task.cancel()


class FakeModal:
    """Module-like: pass it as `ModalEngine(sdk=...)`."""

    exception = modal.exception

    def __init__(self) -> None:
        self.deployed: dict[tuple[str, str, str], Handler] = {}
        self.calls: dict[str, FakeFunctionCall] = {}
        self.spawn_error: BaseException | None = None
        self.spawned = asyncio.Event()
        self._ids = itertools.count(1)
        fake = self

        class Cls:
            @staticmethod
            def from_name(app_name: str, class_name: str) -> Callable[[], Any]:
                return lambda: _Instance(fake, app_name, class_name)

        class FunctionCall:
            @staticmethod
            def from_id(call_id: str) -> FakeFunctionCall:
                if call_id not in fake.calls:
                    raise modal.exception.NotFoundError(f"FunctionCall {call_id} not found")
                return fake.calls[call_id]

        self.Cls = Cls
        self.FunctionCall = FunctionCall

    def deploy(self, app_name: str, class_name: str, method: str, handler: Handler) -> None:
        self.deployed[(app_name, class_name, method)] = handler

    def spawn(self, key: tuple[str, str, str], payload: dict[str, Any]) -> FakeFunctionCall:
        if self.spawn_error is not None:
            raise self.spawn_error
        handler = self.deployed.get(key)
        if handler is None:
            raise modal.exception.NotFoundError(
                f"Lookup failed for Cls '{key[1]}' from the '{key[0]}' app"
            )
        call_id = f"fc-{next(self._ids):04d}"
        call = FakeFunctionCall(call_id, asyncio.ensure_future(handler(payload)), payload)
        self.calls[call_id] = call
        self.spawned.set()
        return call


class _Instance:
    def __init__(self, fake: FakeModal, app_name: str, class_name: str) -> None:
        self._fake = fake
        self._key = (app_name, class_name)

    def __getattr__(self, method: str) -> Any:
        key = (*self._key, method)

        async def spawn(payload: dict[str, Any]) -> FakeFunctionCall:
            await asyncio.sleep(0)  # a network round trip
            return self._fake.spawn(key, payload)

        return type("FakeMethod", (), {"spawn": _Aio(spawn)})()
