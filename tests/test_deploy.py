"""deploy/ stays true to the code: every `supportbot ...` command its files run parses with the
real CLI, every SUPPORTBOT_* variable they set is one the code reads, and the images pin what
the Makefile pins."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.cli import build_parser
from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
YAML_FILES = sorted([DEPLOY / "compose.yaml", *(DEPLOY / "k8s").glob("*.yaml")])
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.cuda"]
VARIABLE = re.compile(r"\bSUPPORTBOT_[A-Z0-9_]+")
# os.environ.get("X") / os.environ["X"] / os.getenv("X"): read directly, not through Settings
ENV_READ = re.compile(r"(?:environ\.get\(|environ\[|getenv\()\s*[\"'](SUPPORTBOT_[A-Z0-9_]+)")


def strings(node: Any) -> Iterator[str]:
    """Every key and scalar of a parsed YAML document, as text."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif node is not None:
        yield str(node)


def commands(node: Any) -> Iterator[list[str]]:
    """argv of every `command` (+ `args`) in compose services and Kubernetes containers."""
    if isinstance(node, dict):
        if "command" in node:
            command = node["command"]
            argv = shlex.split(command) if isinstance(command, str) else list(command)
            yield [str(a) for a in argv + list(node.get("args", []))]
        for value in node.values():
            yield from commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from commands(item)


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def known_variables() -> set[str]:
    """Settings fields (read with the SUPPORTBOT_ prefix) plus the few variables read
    directly from the environment (SUPPORTBOT_CONFIG, the engine's device overrides)."""
    fields = {f"SUPPORTBOT_{name.upper()}" for name in Settings.model_fields}
    direct = {m for package in ("bot", "engine", "adapters")
              for source in (REPO / package).rglob("*.py")
              for m in ENV_READ.findall(source.read_text(encoding="utf-8"))}
    return fields | direct


def dockerfile_commands(path: Path) -> list[list[str]]:
    return [yaml.safe_load(line.removeprefix("CMD ")) for line in path.read_text().splitlines()
            if line.startswith("CMD ")]


def known(variable: str) -> bool:
    """A variable, or a prefix written as `SUPPORTBOT_SLACK_*`, that the code reads."""
    names = known_variables()
    return variable in names or (variable.endswith("_") and
                                 any(n.startswith(variable) for n in names))


def test_deploy_readme_names_only_real_commands_and_settings() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    inline = re.findall(r"`(supportbot [^`]*)`", text)
    blocks = [line.split("#")[0].strip() for line in text.splitlines()
              if line.startswith("supportbot ")]
    parser = build_parser()
    assert len(inline) >= 5
    for command in inline + blocks:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"deploy/README.md: not a supportbot command: {command}")
    unknown = [v for v in VARIABLE.findall(text) if not known(v)]
    assert not unknown, f"deploy/README.md names settings nothing reads: {unknown}"


def test_every_deploy_file_is_checked() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "k8s/kustomization.yaml", "k8s/config.yaml"} <= names
    resources = documents(DEPLOY / "k8s" / "kustomization.yaml")[0]["resources"]
    assert all((DEPLOY / "k8s" / r).is_file() for r in resources)


@pytest.mark.parametrize("path", [*YAML_FILES, *DOCKERFILES], ids=lambda p: p.name)
def test_supportbot_commands_parse_with_the_cli(path: Path) -> None:
    if path.suffix == ".yaml":
        argvs = [c for doc in documents(path) for c in commands(doc)]
    else:
        argvs = dockerfile_commands(path)
    ours = [argv for argv in argvs if argv and argv[0] == "supportbot"]
    parser = build_parser()
    for argv in ours:
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{path.name}: not a supportbot command: {' '.join(argv)}")
        assert callable(getattr(args, "func", None)), f"{path.name}: {argv} runs nothing"
    if path.parent.name == "k8s" and path.name not in ("config.yaml", "redis.yaml",
                                                        "kustomization.yaml"):
        assert ours, f"{path.name} runs no supportbot command"


@pytest.mark.parametrize("path", [*YAML_FILES, *DOCKERFILES, DEPLOY / "env.example"],
                         ids=lambda p: p.name)
def test_supportbot_variables_exist(path: Path) -> None:
    if path.suffix == ".yaml":
        mentioned = {v for doc in documents(path) for s in strings(doc)
                     for v in VARIABLE.findall(s)}
    else:
        mentioned = set(VARIABLE.findall(path.read_text(encoding="utf-8")))
    unknown = {v for v in mentioned if not known(v)}
    assert not unknown, f"{path.name} sets variables nothing reads: {sorted(unknown)}"


def test_compose_services_share_one_redis() -> None:
    [compose] = documents(DEPLOY / "compose.yaml")
    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("command", [""])[0] == "supportbot"}
    assert {"engine", "slack", "discord"} <= ours.keys()
    for name, service in ours.items():
        assert service["environment"]["SUPPORTBOT_REDIS_URL"] == "redis://redis:6379/0", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_images_pin_what_the_makefile_installs() -> None:
    makefile = (REPO / "Makefile").read_text()
    models = re.search(r"^MODELS := (.+)$", makefile, re.M)
    torch_pin = re.search(r"pip install (torch==\S+)", makefile.replace("$(PIP)", "pip"))
    assert models and torch_pin
    for path in DOCKERFILES:
        text = path.read_text()
        assert text.startswith("#") and "\nFROM python:3.11-slim\n" in text, path.name
        assert "--index-url https://download.pytorch.org/whl/" in text, path.name
        assert torch_pin.group(1) in text, path.name
        assert f"pip install --no-deps {models.group(1)}" in text, path.name


def probes(node: Any) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """(container argv, probe) for every httpGet probe of a Kubernetes container."""
    if isinstance(node, dict):
        if "image" in node and "command" in node:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "httpGet" in node.get(kind, {}):
                    yield node["command"], node[kind]["httpGet"] | {"ports": node["ports"]}
        for value in node.values():
            yield from probes(value)
    elif isinstance(node, list):
        for item in node:
            yield from probes(item)


def test_health_probes_hit_what_the_container_serves() -> None:
    found = [p for path in YAML_FILES for doc in documents(path) for p in probes(doc)]
    assert found, "no /healthz probe: the engine's liveness check is missing"
    for argv, probe in found:
        # Only `supportbot engine --http HOST:PORT` serves /healthz (engine/http_api.py).
        assert argv[:2] == ["supportbot", "engine"] and "--http" in argv, argv
        port = int(argv[argv.index("--http") + 1].rpartition(":")[2])
        [named] = [p for p in probe["ports"] if p["name"] == probe["port"]]
        assert probe["path"] == "/healthz" and named["containerPort"] == port
