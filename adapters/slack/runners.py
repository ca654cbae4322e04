"""How Slack reaches the app: Socket Mode (default, no public URL) or the HTTP Events API.

Socket Mode: slack-bolt's aiohttp AsyncSocketModeHandler asks apps.connections.open (with the
app-level token) for a websocket URL and acks each envelope once the app has scheduled it.

HTTP: slack-bolt's own aiohttp server on `path`; its request-verification middleware checks
X-Slack-Signature against the signing secret and refuses (401) a bad signature or a
timestamp more than five minutes off, before any listener runs.
"""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from adapters.slack.app import SlackAdapter

log = logging.getLogger(__name__)


class SocketModeRunner:
    def __init__(self, adapter: SlackAdapter, app_token: str) -> None:
        self.adapter = adapter
        self.app_token = app_token
        self._handler: AsyncSocketModeHandler | None = None

    async def start(self) -> None:
        # Built here, not in __init__: the SDK's client needs a running event loop.
        self._handler = AsyncSocketModeHandler(self.adapter.app, self.app_token)
        await self._handler.connect_async()  # type: ignore[no-untyped-call]  # untyped in bolt
        log.info("slack: connected in Socket Mode")

    async def stop(self) -> None:
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]
        await self.adapter.aclose()


class HttpRunner:
    def __init__(self, adapter: SlackAdapter, host: str = "0.0.0.0", port: int = 3000,
                 path: str = "/slack/events") -> None:
        self.adapter = adapter
        self.host = host
        self.port = port
        self.path = path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.adapter.app.web_app(path=self.path, port=self.port))
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:  # an ephemeral port (tests): remember which one we got
            self.port = int(self._runner.addresses[0][1])
        log.info("slack: listening for Events API requests on %s:%s%s",
                 self.host, self.port, self.path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self.adapter.aclose()
