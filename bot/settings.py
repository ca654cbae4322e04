"""Settings from SUPPORTBOT_* environment variables and an optional TOML file.

Precedence: explicit arguments > environment > TOML file (SUPPORTBOT_CONFIG, or
./supportbot.toml) > defaults. An invalid value stops start-up with a message naming the
setting, never a half-configured bot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from bot.business_hours import BusinessHours

DEFAULT_KB = Path(__file__).resolve().parent.parent / "examples" / "kb"


class SettingsError(ValueError):
    """Configuration that cannot work; the message names each bad setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPPORTBOT_", extra="forbid")

    redis_url: str = Field("", description="Redis URL; empty = in-memory store (one process)")
    redis_prefix: str = Field("sb", description="prefix of every Redis key")
    model: str = Field("", description="generation model: GGUF file or HF directory")
    embed_model: str = Field("", description="embedding model: HF safetensors directory")
    llm: Literal["inprocess", "redis", "http"] = Field(
        "inprocess", description="engine client: inprocess (this process), redis (shared "
        "`supportbot engine` workers) or http (an OpenAI-compatible server)")
    llm_url: str = Field("", description="redis: Redis URL (default: redis_url); "
                         "http: base URL including /v1")
    kb_dir: Path = Field(DEFAULT_KB, description="knowledge-base directory of Markdown articles")
    support_channels: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                        description="channel ids the bot answers in")
    agent_channel: str = Field("", description="channel id where ticket cards go, for every "
                               "platform without its own (below)")
    # Channel ids are per platform: `supportbot run` serving Slack and Discord needs both.
    slack_agent_channel: str = Field("", description="Slack channel id for ticket cards from "
                                     "Slack; empty = agent_channel")
    discord_agent_channel: str = Field("", description="Discord channel id for ticket cards "
                                       "from Discord; empty = agent_channel")
    answer_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                    description="minimum confidence to answer, else escalate")
    rate_limit: int = Field(10, ge=1, description="messages per user per rate window")
    rate_window_s: float = Field(60.0, gt=0)
    history_turns: int = Field(10, ge=0, le=200)
    dedup_ttl_s: int = Field(3600, ge=60)
    # Human handoff and /support authorization (bot/handoff.py, bot/authz.py)
    admin_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="user ids allowed every /support command")
    agent_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="user ids allowed to claim and resolve tickets")
    admin_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Slack user-group / Discord role ids of admins")
    agent_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Slack user-group / Discord role ids of agents")
    claim_timeout_min: float = Field(10.0, gt=0, description="minutes before an unclaimed "
                                     "ticket reminds agents and updates the customer")
    max_reminders: int = Field(3, ge=0, description="reminders per unclaimed ticket")
    business_hours: str = Field("", description="e.g. 'mon-fri 09:00-17:00 Europe/Berlin'; "
                                "empty = always staffed")
    transcript_ttl_days: int = Field(90, ge=1, description="how long human-resolved "
                                     "transcripts are kept for export")
    # Discord adapter (adapters/discordbot; deploy/discord-setup.md)
    discord_token: str = Field("", description="Discord bot token; empty = no Discord adapter")
    discord_application_id: str = Field("", description="application (client) id; default: "
                                        "read from the token")
    discord_admin_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="role ids allowed to use /support besides Manage Server")
    discord_agent_role: str = Field("", description="role id pinged on new ticket cards")
    discord_message_content: bool = Field(True, description="use the privileged message-content "
                                          "intent; off = answer only mentions and DMs")
    # Slack adapter (adapters/slack; README "Slack setup", deploy/slack-app-manifest.yaml)
    slack_bot_token: str = Field("", description="bot token (xoxb-...); empty = no Slack adapter")
    slack_app_token: str = Field("", description="app-level token (xapp-..., "
                                 "connections:write) for Socket Mode")
    slack_signing_secret: str = Field("", description="signing secret; HTTP mode checks "
                                      "every request against it")
    slack_mode: Literal["socket", "http"] = Field("socket", description="socket (no public "
                                                  "URL needed) or http (Events API)")
    slack_http_host: str = Field("0.0.0.0", description="HTTP mode: address to listen on")
    slack_http_port: int = Field(3000, ge=0, le=65535, description="HTTP mode: port")
    slack_http_path: str = Field("/slack/events", description="HTTP mode: request path for "
                                 "events, buttons and /support")
    slack_api_url: str = Field("https://slack.com/api/", description="Web API base URL")
    slack_command: str = Field("/support", description="the admin slash command's name")

    @field_validator("support_channels", "discord_admin_roles", "admin_users", "agent_users",
                     "admin_groups", "agent_groups", mode="before")
    @classmethod
    def _split_channels(cls, value: Any) -> Any:
        if isinstance(value, str):  # "C1,C2" from the environment
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("business_hours")
    @classmethod
    def _check_hours(cls, value: str) -> str:
        BusinessHours.parse(value)  # ValueError names the expected format
        return value

    @model_validator(mode="after")
    def _check_redis(self) -> Settings:
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis_url must start with redis://, rediss:// or unix:// "
                             f"(got {self.redis_url!r})")
        return self

    @model_validator(mode="after")
    def _check_llm(self) -> Settings:
        if self.llm == "http" and not self.llm_url.startswith(("http://", "https://")):
            raise ValueError("llm=http needs llm_url, the server's base URL "
                             "(e.g. http://127.0.0.1:8000/v1)")
        if self.llm == "redis" and not (self.llm_url or self.redis_url):
            raise ValueError("llm=redis needs llm_url or redis_url")
        return self

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("SUPPORTBOT_CONFIG", "supportbot.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings or raise SettingsError naming every invalid setting."""
    config_path = os.environ.get("SUPPORTBOT_CONFIG")
    if config_path and not Path(config_path).is_file():
        raise SettingsError(f"SUPPORTBOT_CONFIG: file not found: {config_path}")
    try:
        return Settings(**overrides)
    except PydanticSettingsError as exc:  # e.g. a value that is not valid JSON
        raise SettingsError(f"invalid configuration: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"SUPPORTBOT_{name.upper()}" if err["loc"] else name
            problems.append(f"{env}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
