"""A small Discord that runs inside the test: the REST routes the adapter uses and a gateway
websocket, so the real discord.py client runs against it unchanged.

Gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats answered with HEARTBEAT_ACK,
dispatches numbered with `s`, RESUME -> replay of what the client missed + RESUMED, and
zlib-stream compression (what discord.py asks for when zstd is not installed).
REST: users/@me, the application, guild command sync, messages (post, edit, delete),
threads from messages, channels, interaction callbacks and follow-ups. Every call is
recorded with its arrival time, so tests assert on what reached "Discord" and when.
A 429 can be armed for the next call matching a route; the call is then not carried out,
as on the real Discord, and the client is expected to retry after `retry_after`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
API = "/api/v10"

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = (
    0, 1, 2, 6, 7, 9, 10, 11)

MESSAGE_CONTENT_INTENT = 1 << 15

ALL_PERMISSIONS = (1 << 50) - 1
MANAGE_GUILD = 1 << 5
VIEW_AND_SEND = (1 << 10) | (1 << 11) | (1 << 38) | (1 << 31)  # view, send, in threads, slash


def json_response(data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """Exactly `application/json`, as Discord sends it (discord.py compares the header)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat()


@dataclass
class Call:
    method: str
    path: str  # without the /api/v10 prefix
    body: Any
    at: float  # time.monotonic() when it arrived
    status: int = 200
    result: Any = None


@dataclass
class GatewayConnection:
    ws: web.WebSocketResponse
    compressor: Any | None  # zlib compressobj for zlib-stream, None for plain JSON


@dataclass
class FakeDiscord:
    heartbeat_interval_ms: int = 500
    calls: list[Call] = field(default_factory=list)
    gateway_ops: list[dict[str, Any]] = field(default_factory=list)  # what the client sent
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # current versions
    deleted: set[str] = field(default_factory=set)
    guilds: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # guild -> cmds

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.app_id = self.snowflake()
        self.bot_user = self.user("supportbot", bot=True, user_id=self.app_id)
        self._rate_limits: list[tuple[str, re.Pattern[str], float]] = []
        self._events: list[tuple[int, dict[str, Any]]] = []  # (seq, frame) of this session
        self._seq = 0
        self.session_id = f"session-{self.snowflake()}"
        self._conn: GatewayConnection | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.intents = 0  # what the client asked for in IDENTIFY
        self.identified = asyncio.Event()
        self.resumed = asyncio.Event()
        self.changed = asyncio.Condition()  # notified on every REST call and gateway op

    # ---- ids and objects --------------------------------------------------------------------

    def snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._ids) & 0x3FFFFF))

    def user(self, name: str, *, bot: bool = False, user_id: str = "") -> dict[str, Any]:
        return {"id": user_id or self.snowflake(), "username": name, "discriminator": "0",
                "global_name": name, "avatar": None, "bot": bot, "public_flags": 0}

    def add_guild(self, name: str = "Tallyhub") -> str:
        gid = self.snowflake()
        everyone = {"id": gid, "name": "@everyone", "permissions": str(VIEW_AND_SEND),
                    "position": 0, "color": 0, "hoist": False, "managed": False,
                    "mentionable": False, "flags": 0}
        self.guilds[gid] = {"id": gid, "name": name, "icon": None, "owner_id": self.snowflake(),
                            "roles": [everyone], "channels": [], "threads": [],
                            "members": [], "member_count": 2, "large": False,
                            "unavailable": False, "features": [], "emojis": [], "stickers": [],
                            "voice_states": [], "presences": [], "joined_at": iso(),
                            "premium_tier": 0, "preferred_locale": "en-US",
                            "system_channel_flags": 0, "verification_level": 0,
                            "default_message_notifications": 0, "explicit_content_filter": 0,
                            "mfa_level": 0, "nsfw_level": 0, "afk_timeout": 300}
        return gid

    def add_role(self, guild_id: str, name: str, permissions: int = 0) -> str:
        rid = self.snowflake()
        self.guilds[guild_id]["roles"].append(
            {"id": rid, "name": name, "permissions": str(permissions), "position": 1,
             "color": 0, "hoist": False, "managed": False, "mentionable": True, "flags": 0})
        return rid

    def add_channel(self, guild_id: str, name: str, *, forum: bool = False) -> str:
        cid = self.snowflake()
        channel: dict[str, Any] = {
                   "id": cid, "type": 15 if forum else 0, "guild_id": guild_id, "name": name,
                   "position": len(self.channels), "permission_overwrites": [], "nsfw": False,
                   "parent_id": None, "topic": None, "rate_limit_per_user": 0, "flags": 0,
                   "last_message_id": None}
        if forum:
            channel.update({"available_tags": [], "default_reaction_emoji": None,
                            "default_sort_order": None, "default_forum_layout": 0})
        self.channels[cid] = channel
        self.guilds[guild_id]["channels"].append(channel)
        return cid

    def member(self, user: dict[str, Any], roles: list[str] | None = None,
               permissions: int | None = None) -> dict[str, Any]:
        m: dict[str, Any] = {"user": user, "roles": roles or [], "joined_at": iso(),
                             "deaf": False, "mute": False, "flags": 0, "nick": None}
        if permissions is not None:
            m["permissions"] = str(permissions)
        return m

    def _thread(self, guild_id: str, parent_id: str, thread_id: str, name: str,
                owner_id: str) -> dict[str, Any]:
        thread = {"id": thread_id, "type": 11, "guild_id": guild_id, "parent_id": parent_id,
                  "name": name, "owner_id": owner_id, "message_count": 0, "member_count": 1,
                  "rate_limit_per_user": 0, "flags": 0, "last_message_id": None,
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                      "archive_timestamp": iso(), "locked": False}}
        self.channels[thread_id] = thread
        self.guilds[guild_id]["threads"].append(thread)  # active threads come with GUILD_CREATE
        return thread

    def archive(self, thread_id: str) -> None:
        """Archive a thread: it is no longer sent in GUILD_CREATE (a fresh client does not
        know it); a new message in it unarchives it, as on Discord."""
        thread = self.channels[thread_id]
        thread["thread_metadata"]["archived"] = True
        threads = self.guilds[thread["guild_id"]]["threads"]
        threads[:] = [t for t in threads if t["id"] != thread_id]

    def message_payload(self, channel_id: str, author: dict[str, Any], content: str, *,
                        message_id: str = "", mentions: list[dict[str, Any]] | None = None,
                        embeds: list[Any] | None = None, components: list[Any] | None = None,
                        msg_type: int = 0) -> dict[str, Any]:
        channel = self.channels.get(channel_id, {})
        payload: dict[str, Any] = {
            "id": message_id or self.snowflake(), "channel_id": channel_id, "author": author,
            "content": content, "timestamp": iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": mentions or [], "mention_roles": [],
            "attachments": [], "embeds": embeds or [], "pinned": False, "type": msg_type,
            "flags": 0, "components": components or []}
        if channel.get("guild_id"):
            payload["guild_id"] = channel["guild_id"]
            payload["member"] = self.member(author)
        return payload

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- test controls ----------------------------------------------------------------------

    def rate_limit_next(self, method: str, path_regex: str, retry_after: float = 0.3) -> None:
        """Answer the next matching call with 429 (and do nothing else)."""
        self._rate_limits.append((method, re.compile(path_regex), retry_after))

    async def wait_until(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        """Wait (event driven, no polling) until what the client did satisfies predicate."""
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def drop_connection(self) -> None:
        """Close the gateway socket as a network failure would (4000: resumable)."""
        assert self._conn is not None
        conn, self._conn = self._conn, None
        self.resumed.clear()
        await conn.ws.close(code=4000, message=b"dropped by test")

    def _as_delivered(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Without the message-content intent Discord blanks guild messages' text, except
        for messages that mention the bot (and DMs, which have no guild)."""
        if event != "MESSAGE_CREATE" or self.intents & MESSAGE_CONTENT_INTENT \
                or "guild_id" not in data or data["author"]["id"] == self.bot_user["id"] \
                or any(u["id"] == self.bot_user["id"] for u in data.get("mentions", [])):
            return data
        return {**data, "content": "", "embeds": [], "components": []}

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Number the event and send it, or keep it for the client's RESUME if it is away."""
        data = self._as_delivered(event, data)
        self._seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self._seq, "d": data}
        self._events.append((self._seq, frame))
        if self._conn is not None:
            await self._send(self._conn, frame)
        return self._seq

    async def redeliver(self, seq: int) -> None:
        """Send an already delivered event again, as Discord may (at least once)."""
        frame = dict(self._events[seq - 1][1])
        if self._conn is not None:
            await self._send(self._conn, frame)

    # ---- driving the client like a user -----------------------------------------------------

    async def say(self, channel_id: str, author: dict[str, Any], content: str,
                  mentions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        payload = self.message_payload(channel_id, author, content, mentions=mentions)
        self.messages[payload["id"]] = payload
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def dm(self, author: dict[str, Any], content: str) -> dict[str, Any]:
        channel_id = self.snowflake()
        self.channels[channel_id] = {"id": channel_id, "type": 1, "recipients": [author],
                                     "last_message_id": None}
        payload = self.message_payload(channel_id, author, content)
        self.messages[payload["id"]] = payload
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def forum_post(self, forum_id: str, author: dict[str, Any], title: str,
                         content: str) -> dict[str, Any]:
        """A new forum post: a thread whose starter message has the thread's id."""
        forum = self.channels[forum_id]
        thread_id = self.snowflake()
        thread = self._thread(forum["guild_id"], forum_id, thread_id, title, author["id"])
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        payload = self.message_payload(thread_id, author, content, message_id=thread_id)
        self.messages[thread_id] = payload
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def _interaction_base(self, guild_id: str, channel_id: str, member: dict[str, Any],
                          itype: int) -> dict[str, Any]:
        return {"id": self.snowflake(), "application_id": self.app_id, "type": itype,
                "token": f"tok-{self.snowflake()}", "version": 1, "guild_id": guild_id,
                "channel_id": channel_id, "channel": self.channels[channel_id],
                "member": member, "app_permissions": str(ALL_PERMISSIONS), "locale": "en-US",
                "guild_locale": "en-US", "entitlements": [],
                "authorizing_integration_owners": {"0": guild_id}, "context": 0,
                "attachment_size_limit": 10 * 1024 * 1024}

    async def slash(self, guild_id: str, channel_id: str, member: dict[str, Any], verb: str,
                    args: str = "") -> dict[str, Any]:
        command = next(c for c in self.commands[guild_id] if c["name"] == "support")
        options: list[dict[str, Any]] = [{"name": "args", "type": 3, "value": args}] if args \
            else []
        payload = self._interaction_base(guild_id, channel_id, member, 2)
        payload["data"] = {"id": command["id"], "name": "support", "type": 1,
                           "guild_id": guild_id,
                           "options": [{"name": verb, "type": 1, "options": options}]}
        payload["dispatched_at"] = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def click(self, message_id: str, custom_id: str,
                    member: dict[str, Any]) -> dict[str, Any]:
        message = self.messages[message_id]
        channel = self.channels[message["channel_id"]]
        payload = self._interaction_base(channel["guild_id"], channel["id"], member, 3)
        payload["message"] = message
        payload["data"] = {"custom_id": custom_id, "component_type": 2}
        payload["dispatched_at"] = time.monotonic()
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    # ---- what the client did ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def last_seq(self) -> int:
        return self._seq

    def seen_seq(self) -> int:
        """The newest event the client says it has processed (its heartbeats carry it)."""
        return max((int(f["d"] or 0) for f in self.gateway_ops if f.get("op") == HEARTBEAT),
                   default=0)

    def seq_of(self, message_id: str) -> int:
        return next(seq for seq, f in self._events
                    if f["t"] == "MESSAGE_CREATE" and f["d"]["id"] == message_id)

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        rx = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    def bot_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """Messages the bot has in a channel now (deleted ones excluded), oldest first."""
        return [m for m in self.messages.values()
                if m["channel_id"] == channel_id and m["author"]["id"] == self.bot_user["id"]
                and m["id"] not in self.deleted]

    def interaction_callbacks(self, interaction_id: str) -> list[Call]:
        return self.calls_to("POST", rf"/interactions/{interaction_id}/[^/]+/callback")

    # ---- gateway ----------------------------------------------------------------------------

    async def _send(self, conn: GatewayConnection, frame: dict[str, Any]) -> None:
        data = json.dumps(frame)
        if conn.ws.closed:
            return
        if conn.compressor is None:
            await conn.ws.send_str(data)
        else:
            await conn.ws.send_bytes(conn.compressor.compress(data.encode())
                                     + conn.compressor.flush(zlib.Z_SYNC_FLUSH))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        compress = request.query.get("compress")
        conn = GatewayConnection(ws, zlib.compressobj() if compress == "zlib-stream" else None)
        if compress not in (None, "zlib-stream"):
            await ws.close(code=4000, message=b"unsupported compression")
            return ws
        await self._send(conn, {"op": HELLO, "s": None, "t": None,
                                "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            self.gateway_ops.append(frame)
            op = frame.get("op")
            if op == HEARTBEAT:
                await self._send(conn, {"op": HEARTBEAT_ACK, "s": None, "t": None, "d": None})
            elif op == IDENTIFY:
                self.intents = int(frame["d"].get("intents", 0))
                self._conn = conn
                await self._ready(conn)
            elif op == RESUME:
                self._conn = conn
                await self._resume(conn, frame["d"])
            await self._notify()
        if self._conn is conn:
            self._conn = None
        await self._notify()
        return ws

    async def _ready(self, conn: GatewayConnection) -> None:
        self._events.clear()
        self._seq = 0
        ready = {"v": 10, "user": self.bot_user, "session_id": self.session_id,
                 "resume_gateway_url": self.gateway_url, "shard": [0, 1],
                 "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
                 "application": {"id": self.app_id, "flags": 0}}
        await self.dispatch("READY", ready)
        for guild in self.guilds.values():
            await self.dispatch("GUILD_CREATE", guild)
        self.identified.set()

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if data.get("session_id") != self.session_id:
            await self._send(conn, {"op": INVALID_SESSION, "s": None, "t": None, "d": False})
            return
        last = int(data.get("seq") or 0)
        for seq, frame in list(self._events):
            if seq > last:
                await self._send(conn, frame)
        await self.dispatch("RESUMED", {})
        self.resumed.set()

    # ---- REST -------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
            else:  # multipart (payload_json) is not used by the adapter
                body = await request.text()
        call = Call(request.method, path, body, time.monotonic())
        self.calls.append(call)
        try:
            for i, (method, rx, retry_after) in enumerate(self._rate_limits):
                if method == request.method and rx.fullmatch(path):
                    del self._rate_limits[i]
                    call.status = 429
                    return json_response(
                        {"message": "You are being rate limited.", "retry_after": retry_after,
                         "global": False}, status=429,
                        # discord.py reads a 429 without `Via` as a Cloudflare ban: no retry.
                        headers={"Via": "1.1 google", "Retry-After": str(retry_after),
                                 "X-RateLimit-Scope": "user",
                                 "X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5",
                                 "X-RateLimit-Reset-After": str(retry_after),
                                 "X-RateLimit-Bucket": "fake-bucket"})
            status, result = await self._route(request.method, path, body)
            call.status, call.result = status, result
            if status == 204:
                return web.Response(status=204)
            return json_response(result, status=status)
        finally:
            await self._notify()

    async def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        match method, parts:
            case "GET", ["users", "@me"]:
                return 200, self.bot_user
            case "GET", ["oauth2", "applications", "@me"]:
                return 200, {"id": self.app_id, "name": "supportbot", "icon": None,
                             "description": "", "rpc_origins": [], "bot_public": True,
                             "bot_require_code_grant": False, "owner": self.user("owner"),
                             "summary": "", "verify_key": "00", "team": None, "flags": 0}
            case "GET", ["gateway" | "gateway", *_]:
                return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": {
                    "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}
            case "PUT", ["applications", _, "guilds", guild_id, "commands"]:
                cmds = [{**c, "id": self.snowflake(), "application_id": self.app_id,
                         "guild_id": guild_id, "version": self.snowflake(),
                         "type": c.get("type", 1)} for c in body]
                self.commands[guild_id] = cmds
                return 200, cmds
            case "GET", ["channels", channel_id]:
                return (200, self.channels[channel_id]) if channel_id in self.channels else \
                    (404, {"message": "Unknown Channel", "code": 10003})
            case "POST", ["channels", channel_id, "messages"]:
                return 200, await self._post_message(channel_id, body)
            case "PATCH", ["channels", channel_id, "messages", message_id]:
                message = self.messages[message_id]
                message.update({k: v for k, v in body.items()
                                if k in ("content", "embeds", "components")})
                message["edited_timestamp"] = iso()
                return 200, message
            case "DELETE", ["channels", _, "messages", message_id]:
                self.deleted.add(message_id)
                return 204, None
            case "POST", ["channels", channel_id, "messages", message_id, "threads"]:
                if message_id in self.channels:
                    return 400, {"message": "A thread has already been created for this "
                                            "message", "code": 160004}
                parent = self.channels[channel_id]
                thread = self._thread(parent["guild_id"], channel_id, message_id,
                                      body["name"], self.bot_user["id"])
                await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
                return 201, thread
            case "POST", ["interactions", interaction_id, _, "callback"]:
                return 200, {"interaction": {
                    "id": interaction_id, "type": 2,
                    "response_message_loading": body.get("type") == 5,
                    "response_message_ephemeral": bool((body.get("data") or {}).get("flags"))}}
            case "POST", ["webhooks", _, token]:
                message = self.message_payload("0", self.bot_user, body.get("content", ""),
                                               embeds=body.get("embeds"))
                message["webhook_token"] = token
                message["flags"] = (body.get("flags") or 0)
                return 200, message
            case "PATCH", ["webhooks", _, token, "messages", _]:
                message = self.message_payload("0", self.bot_user, body.get("content", ""),
                                               embeds=body.get("embeds"))
                message["webhook_token"] = token
                return 200, message
        return 404, {"message": f"fake Discord has no route {method} {path}", "code": 0}

    async def _post_message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        message = self.message_payload(channel_id, self.bot_user, body.get("content") or "",
                                       embeds=body.get("embeds"),
                                       components=body.get("components"))
        message["allowed_mentions"] = body.get("allowed_mentions")  # for the assertions
        self.messages[message["id"]] = message
        # Discord echoes the bot's own messages over the gateway: the client must ignore them.
        await self.dispatch("MESSAGE_CREATE", message)
        return message
