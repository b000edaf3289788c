"""Script calls batched per event-loop tick: one pipeline of EVALSHAs per tick.

Other commands a request needs beside its scripts (:meth:`ScriptBatcher.command`) ride in
the same pipeline.

A single un-pipelined EVALSHA costs a full round trip and a wake-up on each side; with
hundreds of buyers tapping at once most of that is waiting. :class:`ScriptBatcher`
collects the calls made while the loop runs one tick and sends them as one
non-transactional pipeline.

Scripts that take several operations on one key in one run (``reserve.lua`` takes any
number of reservations of one SKU) are also *grouped*: :meth:`ScriptBatcher.call_grouped`
calls made in the same tick for the same script and key become one EVALSHA whose reply
has one item per call. On a hot SKU that turns hundreds of script runs into one, which
is what lifts a flash deal past the server's single-EVALSHA rate. Each call is still
checked and applied on its own, in arrival order, inside one atomic script run.

Several commands of one request that need no answer in between go out as one entry,
:meth:`ScriptBatcher.send` of a :class:`Steps`: one future for all of them, settled
once with every reply, and always in one pipeline, in the order listed. A checkout's
round trip costs one future and one wake-up that way, not one per command.

``NOSCRIPT`` (a restarted or failed-over server lost its script cache) is handled for the
whole batch: the scripts are loaded again and only the calls that got ``NOSCRIPT`` are
sent again, which is safe because a script that got ``NOSCRIPT`` did not run.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["ScriptBatcher", "Steps"]


class Steps:
    """Commands and script calls of one request, sent as one entry of a batch
    (:meth:`ScriptBatcher.send`): in one pipeline, in the order added, under one future."""

    __slots__ = ("commands", "scripts")

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.scripts: list[AsyncScript | None] = []

    def command(self, *args: Any) -> Steps:
        """Add any command (``"HGET", key, field``)."""
        self.commands.append(args)
        self.scripts.append(None)
        return self

    def call(self, script: AsyncScript, keys_and_args: Sequence[Any], *, numkeys: int = 1) -> Steps:
        """Add ``EVALSHA script numkeys *keys_and_args``."""
        self.commands.append(("EVALSHA", script.sha, numkeys, *keys_and_args))
        self.scripts.append(script)
        return self

    def __len__(self) -> int:
        return len(self.commands)


# The kinds of entry: one command (or script call), a group of calls of one script on
# one key, or the steps of one request.
_ONE, _GROUP, _STEPS = 0, 1, 2


class _Entry:
    """One entry of the pipeline: one command (an EVALSHA, or any other), a group of
    calls of one script on one key (one EVALSHA), or several commands (:class:`Steps`)."""

    __slots__ = ("args", "commands", "futures", "key", "kind", "script", "scripts")

    def __init__(
        self,
        kind: int,
        commands: list[tuple[Any, ...]],
        scripts: list[AsyncScript | None],
        script: AsyncScript | None = None,
        key: Any = None,
    ) -> None:
        self.kind = kind
        self.commands = commands
        self.scripts = scripts
        self.script = script
        self.key = key
        self.args: list[Any] = []
        self.futures: list[asyncio.Future[Any]] = []

    def fail(self, error: Exception) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(error)

    def settle_steps(self, replies: list[Any]) -> None:
        """The steps' replies, in order; the first error reply is raised instead."""
        future = self.futures[0]
        if future.done():
            return
        for reply in replies:
            if isinstance(reply, Exception):
                future.set_exception(reply)
                return
        future.set_result(replies)

    def settle(self, reply: Any) -> None:
        if isinstance(reply, Exception):
            self.fail(reply)
            return
        if self.kind == _ONE:
            if not self.futures[0].done():
                self.futures[0].set_result(reply)
            return
        if not isinstance(reply, list) or len(reply) != len(self.futures):
            self.settle(RuntimeError(f"grouped script gave {reply!r} for {len(self.futures)}"))
            return
        for future, item in zip(self.futures, reply, strict=True):
            if not future.done():
                future.set_result(item)


class ScriptBatcher:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        max_batch: int = 1024,
        max_group: int = 256,
        max_inflight: int = 8,
    ) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._max_group = max_group
        # Pipelines in flight at once, each on its own connection; calls made meanwhile
        # wait for one to finish and go out together (bounded connections, bigger batches).
        self._max_inflight = max_inflight
        self._pending: list[_Entry] = []
        self._groups: dict[tuple[str, Any], _Entry] = {}
        self._scheduled = False
        # The loop the next flush is scheduled on: asked for once per batch, not once per
        # call (Python 3.11's get_running_loop() makes a getpid system call each time).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches_sent = 0
        self.scripts_sent = 0
        self.calls_sent = 0

    def call(
        self, script: AsyncScript, keys_and_args: Sequence[Any], *, numkeys: int = 1
    ) -> asyncio.Future[Any]:
        """Queue ``EVALSHA script numkeys *keys_and_args`` (the first ``numkeys`` items are
        keys, one by default); the future gets the reply."""
        entry = _Entry(_ONE, [("EVALSHA", script.sha, numkeys, *keys_and_args)], [script])
        self._pending.append(entry)
        return self._enqueue(entry)

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue any other command (``"HGET", key, field``) in the same pipeline, so a
        request that also reads or writes a key beside its scripts pays no round trip
        of its own for it."""
        entry = _Entry(_ONE, [args], [None])
        self._pending.append(entry)
        return self._enqueue(entry)

    def send(self, steps: Steps) -> asyncio.Future[list[Any]]:
        """Queue the steps of one request as one entry: they go out in one pipeline, in
        order, and the future gets the list of their replies (or the first error reply,
        raised). Redis runs every step, whatever an earlier one answered."""
        entry = _Entry(_STEPS, steps.commands, steps.scripts)
        self._pending.append(entry)
        return self._enqueue(entry)

    def call_grouped(
        self, script: AsyncScript, key: Any, args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Queue one operation of a grouping script; the future gets its item of the reply."""
        entry = self._groups.get((script.sha, key))
        if entry is None or len(entry.futures) >= self._max_group:
            entry = _Entry(_GROUP, [], [script], script, key)
            self._groups[(script.sha, key)] = entry
            self._pending.append(entry)
        entry.args.extend(args)
        return self._enqueue(entry)

    def _enqueue(self, entry: _Entry) -> asyncio.Future[Any]:
        loop = self._loop if self._scheduled else None
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entry.futures.append(future)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        elif len(self._pending) >= self._max_batch:
            self._flush()
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending or len(self._inflight) >= self._max_inflight:
            return  # a finishing batch flushes again
        batch, self._pending = self._pending, []
        self._groups = {}
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._inflight.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._pending and not self._scheduled:
            self._scheduled = True
            self._loop = task.get_loop()
            self._loop.call_soon(self._flush)

    async def _send(self, batch: list[_Entry]) -> None:
        self.batches_sent += 1
        self.scripts_sent += len(batch)
        self.calls_sent += sum(len(e.futures) for e in batch)
        commands: list[tuple[Any, ...]] = []
        scripts: list[AsyncScript | None] = []
        for entry in batch:
            if entry.kind == _GROUP:
                assert entry.script is not None
                commands.append(("EVALSHA", entry.script.sha, 1, entry.key, *entry.args))
                scripts.append(entry.script)
            else:
                commands += entry.commands
                scripts += entry.scripts
        try:
            replies = await self._execute(commands)
            if any(isinstance(r, NoScriptError) for r in replies):
                replies = await self._resend_unloaded(commands, scripts, replies)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ConnectionError("batch cancelled")
            for entry in batch:
                entry.fail(error)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for entry in batch:
            if entry.kind == _STEPS:
                end = at + len(entry.commands)
                entry.settle_steps(replies[at:end])
                at = end
            else:
                entry.settle(replies[at])
                at += 1

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Write the commands on one pooled connection and read their replies, raw (an
        error reply is its exception, in its place). No client-side reply parsing: HGETALL
        answers a flat list, TIME two strings, SET ``b"OK"`` or None."""
        # Packed here by hiredis in one C call per command: the client's own packing
        # encodes every argument in Python first, the larger part of a batch's cost.
        try:
            packed = b"".join([pack_command(command) for command in commands])
        except TypeError as exc:
            raise DataError(str(exc)) from None
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(packed)
            replies: list[Any] = []
            # One deadline (the command timeout) for all the batch's replies, instead of
            # a timeout context per reply, which cost as much as reading the reply.
            # ``math.inf`` tells redis-py to set none of its own per read.
            async with asyncio.timeout(connection.socket_timeout):
                parser = connection._parser
                if isinstance(parser, _AsyncHiredisParser):
                    await _read_replies(parser, len(commands), replies)
                else:
                    for _ in commands:
                        try:
                            replies.append(await connection.read_response(timeout=math.inf))
                        except ResponseError as exc:
                            replies.append(exc)
        except TimeoutError:
            await connection.disconnect()
            raise RedisTimeoutError(f"no reply from Redis to a batch of {len(commands)}") from None
        except OSError as exc:
            await connection.disconnect()
            raise RedisConnectionError(f"error reading from Redis: {exc}") from exc
        except BaseException:
            # Replies may be left unread on it: never hand it out again.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return replies

    async def _resend_unloaded(
        self,
        commands: list[tuple[Any, ...]],
        scripts: list[AsyncScript | None],
        replies: list[Any],
    ) -> list[Any]:
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        loads = {script.sha: script for i in missing if (script := scripts[i]) is not None}
        for script in loads.values():
            await self._redis.script_load(script.script)
        again = await self._execute([commands[i] for i in missing])
        merged = list(replies)
        for index, reply in zip(missing, again, strict=True):
            merged[index] = reply
        return merged

    async def aclose(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        if self._pending:
            self._flush()
        while self._inflight or self._pending:
            if not self._inflight:
                self._flush()
            await asyncio.gather(*self._inflight, return_exceptions=True)


async def _read_replies(parser: _AsyncHiredisParser, count: int, replies: list[Any]) -> None:
    """Read ``count`` replies straight off the connection's hiredis reader: every reply
    the bytes read so far hold is taken in one C call each, without redis-py's
    per-reply path (timeout context, health check, error re-raise), which cost more
    than the parsing. An error reply is its exception (``NoScriptError`` and the like,
    as redis-py maps them), in its place; one that means the connection is unusable
    (``LOADING``, too many clients) is raised."""
    reader: Any = parser._reader
    while len(replies) < count:
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA:
            await parser.read_from_socket()  # type: ignore[no-untyped-call]
            continue
        if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
            raise reply
        replies.append(reply)
