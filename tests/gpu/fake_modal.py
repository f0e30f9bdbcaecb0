"""A FAKE of the parts of Modal's SDK the Modal engine uses, because Modal cannot be
reached from tests. It mirrors the client and container code of `modal` 1.6.4 (read
from the package's source; file names below are inside the `modal` package) and keeps
Modal's real exception classes (`modal.exception`). Deployed methods are async Python
handlers, one per input; inputs can be grouped into a batch that shares one context,
as `@modal.batched` does.

What is mirrored, and where the real behaviour lives:
- `FunctionCall.from_id` is lazy and never fails, whatever the id
  (_functions.py `_FunctionCall.from_id`: a loader with `hydrate_lazily=True` that only
  records the id). An id Modal does not know fails when read: the server answers
  NOT_FOUND, which the client raises as `NotFoundError` (_grpc_client.py, the status
  to exception table).
- `get(timeout=)` raises the builtin `TimeoutError` while the call runs, and
  `OutputExpiredError` when there is neither an output nor an unfinished input
  (_functions.py `_Invocation.poll_function`). Outputs are read with
  `clear_on_success=False`, so a finished call can be read again until it expires.
- A failure raised by the remote code is re-raised as that exception; a terminated
  input (cancelled, or its container stopped) has a result with status TERMINATED and
  no data, which the client raises as `RemoteError` (_utils/function_utils.py
  `_process_result`; the container writes those results in
  _runtime/container_io_manager.py `IOContext.output_items_cancellation`).
- `cancel()` cancels the call's inputs, and every input of a batch shares its
  IOContext, so cancelling one input terminates the whole batch
  (_runtime/container_io_manager.py: `current_inputs[input_id] = io_context` for each
  input of a batch; `_heartbeat_handle_cancellations` cancels that context).
- `Dict.from_name(name, create_if_missing=True)` with `get`, `put`, `contains`, each
  callable directly (container code) or as `.aio` (dict.py `_Dict`).
- `Queue.from_name(name, create_if_missing=True)` with `put`, `get` and `get_many`
  (queue.py `_Queue`): each partition is its own FIFO and the default partition is
  one more; a partition key must be 1 to 64 bytes (`validate_partition_key`, else
  `InvalidError`); an item over 1 MiB is refused (the class's documented limit, as
  the `RequestSizeError` the client raises for a request too large in
  `_put_many_blocking`); `get` and `get_many` remove what they return; blocking, they
  wait for an item and raise the stdlib's `queue.Empty` when `timeout` passes first
  (`_get_blocking`); not blocking, `get` returns None and `get_many` an empty list
  (`_get_nonblocking`). Items cross as pickled bytes (`_serialization.serialize`),
  so what is read is a copy of what was put.
- `Volume` as a container sees it (volume.py `_Volume`, its docstring and `commit`,
  `reload`): a container mounts the volume as last committed; its own writes are seen
  by others only after it commits and they reload; a commit persists the container's
  changes (last write wins per file) and reloads; a reload may commit uncommitted
  changes first, and is refused while a file of the volume is open ("there are open
  files preventing the operation", raised as RuntimeError). Mounts are folders here.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modal.exception

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class _Method:
    """Modal's methods are callable directly and as `.aio` (synchronicity)."""

    def __init__(self, sync: Callable[..., Any], aio: Callable[..., Awaitable[Any]]) -> None:
        self._sync = sync
        self.aio = aio

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._sync(*args, **kwargs)


def _aio_only(function: Callable[..., Awaitable[Any]]) -> _Method:
    def sync(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the engine must use the .aio variant")

    return _Method(sync, function)


@dataclass
class _Batch:
    """The IOContext that the inputs of one batched call share."""

    inputs: list[_Input] = field(default_factory=list)

    def terminate(self) -> None:
        for item in self.inputs:
            item.terminated = True
            item.task.cancel()


@dataclass
class _Input:
    """One input on Modal's side: its running handler and its fate."""

    call_id: str
    task: asyncio.Task[Any]
    payload: dict[str, Any]
    batch: _Batch
    terminated: bool = False
    expired: bool = False
    polls: int = 0
    cancel_requests: int = 0


class FakeFunctionCall:
    """A client-side handle, as `spawn` or `from_id` return it."""

    def __init__(self, fake: FakeModal, object_id: str) -> None:
        self._fake = fake
        self.object_id = object_id
        self.get = _aio_only(self._get)
        self.cancel = _aio_only(self._cancel)

    def _input(self) -> _Input:
        found = self._fake.inputs.get(self.object_id)
        if found is None:
            raise modal.exception.NotFoundError(f"Function call {self.object_id} not found")
        return found

    async def _get(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (Modal's signature)
        item = self._input()
        item.polls += 1
        if item.expired:
            raise modal.exception.OutputExpiredError()
        await asyncio.wait({item.task}, timeout=timeout)
        if item.terminated:
            raise modal.exception.RemoteError("")
        if not item.task.done():
            raise TimeoutError()
        return item.task.result()  # a handler's exception is re-raised as itself

    async def _cancel(self, terminate_containers: bool = False) -> None:
        # Whatever `terminate_containers` says, the input's shared context ends: one
        # batched call's IOContext (modal/_container_entrypoint.py, batched inputs share
        # it), or for sync methods under @modal.concurrent the whole container (its
        # cancel callback SIGINTs the process).
        item = self._input()
        item.cancel_requests += 1
        item.batch.terminate()


class FakeDict:
    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

        async def get(key: Any, default: Any = None) -> Any:
            return self.data.get(key, default)

        async def put(key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
            if skip_if_exists and key in self.data:
                return False
            self.data[key] = value
            return True

        async def contains(key: Any) -> bool:
            return key in self.data

        self.get = _Method(lambda key, default=None: self.data.get(key, default), get)
        self.put = _Method(lambda key, value: self.data.__setitem__(key, value) or True, put)
        self.contains = _Method(lambda key: key in self.data, contains)


class FakeQueue:
    """A modal.Queue. Container code puts from its own threads (`put`), the engine
    reads on the event loop (`.aio`); both see one store under a lock."""

    ITEM_LIMIT = 1024 * 1024  # queue.py `_Queue`: "Each item can be up to 1 MiB"
    # queue.py `_Queue`: "each with up to 5,000 items"; a put to a full partition
    # waits (`_put_many_blocking` retries RESOURCE_EXHAUSTED) until its timeout, then
    # raises queue.Full, and with no timeout waits for ever.
    PARTITION_ITEM_LIMIT = 5000
    # How often a blocking read looks again (the real one holds a long-poll RPC open).
    POLL_SECONDS = 0.005

    def __init__(self) -> None:
        self.partitions: dict[bytes, deque[bytes]] = {}
        self.ttls: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # a take makes room for a put

        def put_sync(
            v: Any,
            block: bool = True,
            timeout: float | None = None,
            *,
            partition: str | None = None,
            partition_ttl: int = 24 * 3600,
        ) -> None:
            self._put(v, partition, partition_ttl, block, timeout)

        async def put(
            v: Any,
            block: bool = True,
            timeout: float | None = None,  # noqa: ASYNC109 (Modal's signature)
            *,
            partition: str | None = None,
            partition_ttl: int = 24 * 3600,
        ) -> None:
            self._put(v, partition, partition_ttl, block, timeout)

        async def get(
            block: bool = True,
            timeout: float | None = None,  # noqa: ASYNC109 (Modal's signature)
            *,
            partition: str | None = None,
        ) -> Any:
            values = await self._get(1, block, timeout, partition)
            return values[0] if values else None

        async def get_many(
            n_values: int,
            block: bool = True,
            timeout: float | None = None,  # noqa: ASYNC109 (Modal's signature)
            *,
            partition: str | None = None,
        ) -> list[Any]:
            return await self._get(n_values, block, timeout, partition)

        self.put = _Method(put_sync, put)
        self.get = _aio_only(get)
        self.get_many = _aio_only(get_many)

    @staticmethod
    def _key(partition: str | None) -> bytes:
        # queue.py `_Queue.validate_partition_key`
        if partition is None:
            return b""
        key = partition.encode("utf-8")
        if len(key) == 0 or len(key) > 64:
            raise modal.exception.InvalidError(
                "Queue partition key must be between 1 and 64 characters."
            )
        return key

    def _put(
        self,
        v: Any,
        partition: str | None,
        partition_ttl: int,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        key = self._key(partition)
        encoded = pickle.dumps(v)
        if len(encoded) > self.ITEM_LIMIT:
            raise modal.exception.RequestSizeError("Queue.put request is too large")
        with self._room:
            if not self._room.wait_for(
                lambda: len(self.partitions.get(key, ())) < self.PARTITION_ITEM_LIMIT,
                timeout=timeout if block else 0,
            ):
                raise queue.Full()
            self.partitions.setdefault(key, deque()).append(encoded)
            self.ttls[key] = partition_ttl

    def _take(self, key: bytes, n_values: int) -> list[Any]:
        with self._lock:
            items = self.partitions.get(key, deque())
            taken = [items.popleft() for _ in range(min(n_values, len(items)))]
            self._room.notify_all()
        return [pickle.loads(item) for item in taken]

    async def _get(
        self, n_values: int, block: bool, wait: float | None, partition: str | None
    ) -> list[Any]:
        key = self._key(partition)
        await asyncio.sleep(0)  # a network round trip
        if not block:
            return self._take(key, n_values)
        deadline = None if wait is None else time.monotonic() + wait
        while not (taken := self._take(key, n_values)):
            if deadline is not None and time.monotonic() >= deadline:
                raise queue.Empty()
            await asyncio.sleep(self.POLL_SECONDS)
        return taken

    def waiting(self, partition: str) -> int:
        with self._lock:
            return len(self.partitions.get(self._key(partition), ()))


class FakeModal:
    """Module-like: pass it as `ModalEngine(sdk=...)`."""

    exception = modal.exception

    def __init__(self) -> None:
        self.deployed: dict[tuple[str, str, str], Handler] = {}
        self.inputs: dict[str, _Input] = {}
        self.dicts: dict[str, FakeDict] = {}
        self.queues: dict[str, FakeQueue] = {}
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
                return FakeFunctionCall(fake, call_id)

        class Dict:
            @staticmethod
            def from_name(name: str, *, create_if_missing: bool = False) -> FakeDict:
                if name not in fake.dicts:
                    if not create_if_missing:
                        raise modal.exception.NotFoundError(f"Dict {name!r} not found")
                    fake.dicts[name] = FakeDict()
                return fake.dicts[name]

        class Queue:
            @staticmethod
            def from_name(name: str, *, create_if_missing: bool = False) -> FakeQueue:
                if name not in fake.queues:
                    if not create_if_missing:
                        raise modal.exception.NotFoundError(f"Queue {name!r} not found")
                    fake.queues[name] = FakeQueue()
                return fake.queues[name]

        self.Cls = Cls
        self.FunctionCall = FunctionCall
        self.Dict = Dict
        self.Queue = Queue

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
        batch = _Batch()
        item = _Input(call_id, asyncio.ensure_future(handler(payload)), payload, batch)
        batch.inputs.append(item)
        self.inputs[call_id] = item
        self.spawned.set()
        return FakeFunctionCall(self, call_id)

    def batch_together(self, *call_ids: str) -> None:
        """Modal put these inputs into one batched call, or into one container of a
        class with concurrent sync inputs: one cancel or stop ends them all."""
        shared = _Batch()
        for call_id in call_ids:
            item = self.inputs[call_id]
            item.batch = shared
            shared.inputs.append(item)

    def expire(self, call_id: str) -> None:
        """Modal no longer keeps this call's output."""
        self.inputs[call_id].expired = True

    def terminate_container(self, call_id: str) -> None:
        """The container running this input stopped (preemption, a crash)."""
        self.inputs[call_id].batch.terminate()


class _Instance:
    def __init__(self, fake: FakeModal, app_name: str, class_name: str) -> None:
        self._fake = fake
        self._key = (app_name, class_name)

    def __getattr__(self, method: str) -> Any:
        key = (*self._key, method)

        async def spawn(payload: dict[str, Any]) -> FakeFunctionCall:
            await asyncio.sleep(0)  # a network round trip
            return self._fake.spawn(key, payload)

        return type("FakeMethod", (), {"spawn": _aio_only(spawn)})()


class FakeVolume:
    """One volume's durable, committed state, shared by the containers that mount it."""

    def __init__(self) -> None:
        self.committed: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}  # files keep their times, as on a filesystem
        self.commits = 0

    def mount(self, folder: Path) -> FakeVolumeMount:
        """A container starting with the volume mounted at `folder`."""
        return FakeVolumeMount(self, folder)


class FakeVolumeMount:
    """A container's view of a FakeVolume, with the container-side `commit` and
    `reload` (callable directly, as container code calls them, or as `.aio`)."""

    def __init__(self, volume: FakeVolume, folder: Path) -> None:
        self.volume = volume
        self.folder = folder
        self._base: dict[str, bytes] = {}
        self._show_committed()

        async def commit_aio() -> None:
            self._commit()

        async def reload_aio() -> None:
            self._reload()

        self.commit = _Method(self._commit, commit_aio)
        self.reload = _Method(self._reload, reload_aio)

    def files(self) -> dict[str, bytes]:
        return {
            str(path.relative_to(self.folder)): path.read_bytes()
            for path in sorted(self.folder.rglob("*"))
            if path.is_file()
        }

    def _show_committed(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        for name, data in self.volume.committed.items():
            target = self.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            modified = self.volume.modified[name]
            os.utime(target, (modified, modified))
        self._base = dict(self.volume.committed)

    def _commit(self) -> None:
        # volume.py `_Volume.commit`: persist, then reload (resp.skip_reload unset).
        current = self.files()
        for name, data in current.items():
            modified = (self.folder / name).stat().st_mtime
            if self._base.get(name) != data or self.volume.modified.get(name) != modified:
                self.volume.committed[name] = data  # last write wins
                self.volume.modified[name] = modified
        for name in self._base.keys() - current.keys():
            self.volume.committed.pop(name, None)
            self.volume.modified.pop(name, None)
        self.volume.commits += 1
        self._show_committed()

    def _reload(self) -> None:
        # volume.py `_Volume.reload`: refused while a file of the volume is open.
        if self._open_files():
            raise RuntimeError(
                f"there are open files preventing the operation: {self._open_files()[0]} is open"
            )
        self._commit()  # "uncommitted changes ... may implicitly be committed"

    def _open_files(self) -> list[str]:
        inside = str(self.folder.resolve()) + os.sep
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(inside):
                found.append(target)
        return found
