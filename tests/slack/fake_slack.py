"""A fake Slack, local and in-process, that the real slack-bolt / slack-sdk code talks to.

- Web API under /api/<method>: auth.test, apps.connections.open, chat.postMessage,
  chat.update, chat.delete, chat.postEphemeral, chat.getPermalink, usergroups.list, users.info.
  It checks
  the limits real Slack enforces (3,000 characters per section block, 50 blocks per message,
  a bot token on every call, an app token for apps.connections.open) and answers the error
  Slack would, so an adapter bug shows up as a failed call.
- Socket Mode: apps.connections.open hands out ws://.../link; the socket says `hello`, then
  carries the envelopes a test sends (events_api with retry_attempt, interactive,
  slash_commands) and records each ack with its arrival time.
- response_url endpoints (/respond/<n>) for slash commands and buttons.
- Failure injection: `rate_limit_next(method)` answers the next call with 429 + Retry-After.

Every API call is recorded (method, arguments, monotonic arrival time, HTTP status).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
TEAM_ID = "T0TEAM"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0APP"


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    at: float  # time.monotonic() when the request arrived
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    user: str = BOT_USER_ID
    deleted: bool = False
    edits: int = 0


@dataclass
class Ack:
    envelope_id: str
    at: float
    payload: dict[str, Any] | None


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.acks: dict[str, Ack] = {}
        self.sent_at: dict[str, float] = {}  # envelope id -> when it was sent
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_url
        self.usergroups: list[dict[str, Any]] = []
        self.users: dict[str, str] = {"U0CUST": "Casey Customer", "U0AGENT": "Alex Agent",
                                      "U0ADMIN": "Ada Admin"}  # user id -> display name
        self._rate_limits: dict[str, deque[int]] = defaultdict(deque)
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)  # the SDK GETs a few methods
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{n}", self._respond)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # ---- test controls --------------------------------------------------------------------

    def rate_limit_next(self, method: str, retry_after: int = 1) -> None:
        self._rate_limits[method].append(retry_after)

    async def wait_connected(self, within_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within_s)

    async def send_envelope(self, kind: str, payload: dict[str, Any],
                            retry_attempt: int | None = None,
                            retry_reason: str | None = None) -> str:
        """Push one Socket Mode envelope to the connected app; returns its envelope id."""
        if not self._sockets:
            raise AssertionError("no Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": kind,
                                    "payload": payload,
                                    "accepts_response_payload": kind != "events_api"}
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt or 0
            envelope["retry_reason"] = retry_reason or ""
        self.sent_at[envelope_id] = time.monotonic()
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id

    async def send_event(self, event: dict[str, Any], retry_attempt: int | None = None,
                         event_id: str | None = None) -> str:
        return await self.send_envelope(
            "events_api", event_callback(event, event_id), retry_attempt,
            "timeout" if retry_attempt else None)

    async def wait_ack(self, envelope_id: str, within_s: float = 5.0) -> Ack:
        await self.wait_for(lambda: envelope_id in self.acks, within_s)
        return self.acks[envelope_id]

    async def wait_for(self, condition: Callable[[], bool], within_s: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), within_s)

    def response_url(self) -> str:
        return f"{self.base_url}/respond/{len(self.responses)}-{uuid.uuid4().hex[:6]}"

    # ---- what happened --------------------------------------------------------------------

    def calls_to(self, method: str, ok_only: bool = True) -> list[ApiCall]:
        return [c for c in self.calls
                if c.method == method and (not ok_only or c.status == 200)]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """Live bot messages in a thread, oldest first."""
        return sorted((m for m in self.messages.values()
                       if m.channel == channel and m.thread_ts == thread_ts and not m.deleted),
                      key=lambda m: m.ts)

    def in_channel(self, channel: str) -> list[Message]:
        return sorted((m for m in self.messages.values()
                       if m.channel == channel and not m.deleted), key=lambda m: m.ts)

    # ---- HTTP handlers --------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        call = ApiCall(method, args, time.monotonic())
        self.calls.append(call)
        if self._rate_limits[method]:
            retry_after = self._rate_limits[method].popleft()
            call.status = 429
            call.response = {"ok": False, "error": "ratelimited"}
            return web.json_response(call.response, status=429,
                                     headers={"Retry-After": str(retry_after)})
        token = args.get("token") or request.headers.get("Authorization", "")[7:]
        wanted = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != wanted:
            call.response = {"ok": False, "error": "invalid_auth"}
        else:
            call.response = self._dispatch(method, args)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(call.response)

    def _dispatch(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "usergroups.list": self._usergroups,
            "users.info": self._user_info,
        }.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(args)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "supportbot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                "is_enterprise_install": False}

    def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ws_url = self.base_url.replace("http://", "ws://") + "/link"
        return {"ok": True, "url": f"{ws_url}?ticket={uuid.uuid4().hex}"}

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        problem = _check_message(args)
        if problem:
            return {"ok": False, "error": problem}
        ts = self._next_ts()
        msg = Message(channel=str(args["channel"]), ts=ts, text=str(args.get("text", "")),
                      blocks=_blocks(args), thread_ts=args.get("thread_ts"))
        self.messages[(msg.channel, ts)] = msg
        return {"ok": True, "channel": msg.channel, "ts": ts,
                "message": {"text": msg.text, "ts": ts, "user": BOT_USER_ID}}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if msg is None or msg.deleted:
            return {"ok": False, "error": "message_not_found"}
        problem = _check_message(args)
        if problem:
            return {"ok": False, "error": problem}
        msg.text, msg.blocks, msg.edits = str(args.get("text", "")), _blocks(args), msg.edits + 1
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if msg is None or msg.deleted:
            return {"ok": False, "error": "message_not_found"}
        msg.deleted = True
        return {"ok": True, "channel": msg.channel, "ts": msg.ts}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        problem = _check_message(args)
        if problem or not args.get("user"):
            return {"ok": False, "error": problem or "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), str(args.get("message_ts", ""))
        return {"ok": True, "channel": channel,
                "permalink": f"https://acme.slack.com/archives/{channel}/p{ts.replace('.', '')}"}

    def _usergroups(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "usergroups": self.usergroups}

    def _user_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user", ""))
        if user not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {"id": user, "name": user.lower(),
                                     "profile": {"display_name": self.users[user]}}}

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                      "connection_info": {"app_id": APP_ID},
                                      "debug_info": {"host": "fake-slack"}}))
        self._connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "envelope_id" in data:
                        self.acks[data["envelope_id"]] = Ack(
                            data["envelope_id"], time.monotonic(), data.get("payload"))
                        async with self._changed:
                            self._changed.notify_all()
        finally:
            self._sockets.remove(ws)
        return ws

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        async with self._changed:
            self._changed.notify_all()
        return web.Response(text="ok")


# ---- payload builders (what Slack sends) ----------------------------------------------------


def event_callback(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"token": "legacy", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}]}


_user_ts = itertools.count(1)


def user_ts() -> str:
    return f"{int(time.time())}.{next(_user_ts):06d}"


def message_event(channel: str, text: str, user: str = "U0CUST", ts: str | None = None,
                  thread_ts: str | None = None, channel_type: str = "channel",
                  **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message", "channel": channel, "user": user,
                             "text": text, "ts": ts or user_ts(), "team": TEAM_ID,
                             "channel_type": channel_type, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    event["event_ts"] = event["ts"]
    return event


def mention_event(message: dict[str, Any]) -> dict[str, Any]:
    """The app_mention Slack sends alongside a message that mentions the bot."""
    event = {k: v for k, v in message.items() if k != "channel_type"}
    event["type"] = "app_mention"
    return event


# ---- helpers --------------------------------------------------------------------------------


async def _read_args(request: web.Request) -> dict[str, Any]:
    raw = await request.text()
    if request.content_type == "application/json":
        data: dict[str, Any] = json.loads(raw) if raw else {}
        return data
    args: dict[str, Any] = dict(parse_qsl(raw))
    args.update(request.query)
    return args


def _blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return list(blocks)


def _check_message(args: dict[str, Any]) -> str:
    """The error real Slack answers for a malformed message, or ""."""
    if not args.get("channel"):
        return "channel_not_found"
    blocks = _blocks(args)
    if not blocks and not args.get("text"):
        return "no_text"
    if len(blocks) > 50:
        return "invalid_blocks"
    if len(str(args.get("text", ""))) > 40000:
        return "msg_too_long"
    for block in blocks:
        if block.get("type") == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                return "invalid_blocks"
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
        if block.get("type") == "header" and len(block["text"]["text"]) > 150:
            return "invalid_blocks"
        if block.get("type") == "actions":
            ids = [e["action_id"] for e in block["elements"]]
            if len(ids) != len(set(ids)) or len(ids) > 25:
                return "invalid_blocks"
            for element in block["elements"]:
                if "value" in element and not 1 <= len(element["value"]) <= 2000:
                    return "invalid_blocks"
    return ""


def block_actions(fake: FakeSlack, message: Message, action_id: str, user: str,
                  value: str | None = None) -> dict[str, Any]:
    """The `interactive` payload Slack sends when `user` presses a button on `message`."""
    button = next(e for b in message.blocks if b["type"] == "actions"
                  for e in b["elements"] if e["action_id"] == action_id)
    container: dict[str, Any] = {"type": "message", "message_ts": message.ts,
                                 "channel_id": message.channel, "is_ephemeral": False}
    raw_message: dict[str, Any] = {"type": "message", "user": BOT_USER_ID, "ts": message.ts,
                                   "text": message.text, "blocks": message.blocks}
    if message.thread_ts:
        container["thread_ts"] = raw_message["thread_ts"] = message.thread_ts
    action = {"type": "button", "action_id": action_id, "block_id": "sb_actions",
              "text": button["text"], "action_ts": user_ts()}
    if value is not None or "value" in button:
        action["value"] = value if value is not None else button["value"]
    return {"type": "block_actions", "team": {"id": TEAM_ID, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "legacy", "container": container,
            "trigger_id": uuid.uuid4().hex, "channel": {"id": message.channel, "name": "x"},
            "message": raw_message, "response_url": fake.response_url(), "actions": [action]}


def slash_command(fake: FakeSlack, text: str, user: str, channel: str = "C0AGENTS",
                  command: str = "/support") -> dict[str, Any]:
    return {"token": "legacy", "team_id": TEAM_ID, "team_domain": "acme",
            "channel_id": channel, "channel_name": "agents", "user_id": user,
            "user_name": user.lower(), "command": command, "text": text, "api_app_id": APP_ID,
            "response_url": fake.response_url(), "trigger_id": uuid.uuid4().hex}
