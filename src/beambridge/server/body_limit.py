"""Refuse request bodies over a size limit before reading them into memory."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """ASGI middleware answering 413 for bodies larger than ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, "Content-Length header is not a number", 400)
                    return
                if declared > self.max_bytes:
                    await self._refuse(send, self._message(declared), 413)
                    return
        received = 0
        too_big = False

        async def limited_receive() -> Message:
            nonlocal received, too_big
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_big = True
                    raise _TooLarge
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            # The framework may turn the error raised while reading into its own answer; answer 413 instead.
            nonlocal replaced
            if not too_big:
                await send(message)
            elif not replaced:
                replaced = True
                await self._refuse(send, self._message(received), 413)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not replaced:
                await self._refuse(send, self._message(received), 413)

    def _message(self, size: int) -> str:
        return (
            f"request body of {size} bytes is over the limit of {self.max_bytes} bytes; send smaller batches"
        )

    @staticmethod
    async def _refuse(send: Send, detail: str, status: int) -> None:
        body = orjson.dumps({"detail": detail})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
