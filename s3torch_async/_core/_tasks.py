"""Waiting for tasks that must end before their owner goes on, even when it is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def settle(task: asyncio.Future[Any]) -> bool:
    """Wait until ``task`` is done even if we are cancelled meanwhile (never cancels it).

    Returns whether a cancellation arrived while waiting (the caller must re-raise it).
    """
    interrupted = False
    while not task.done():
        try:
            await asyncio.wait([task])  # unlike ``await task``, never cancels ``task``
        except asyncio.CancelledError:  # noqa: PERF203 - the wait goes on
            interrupted = True
    return interrupted


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, also when cancelled meanwhile.

    Raises:
        asyncio.CancelledError: We were cancelled while waiting (after every task ended:
            their own cleanup runs to its end first).
    """
    pending = list(tasks)
    for task in pending:
        task.cancel()
    interrupted = False
    for task in pending:
        interrupted |= await settle(task)
    if interrupted:
        raise asyncio.CancelledError
