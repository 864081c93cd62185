"""docker/: the compose file validates, and the Dockerfile runs what the README documents."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from labelloop.settings import LabelLoopSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker/Dockerfile").read_text()
README = (ROOT / "README.md").read_text()


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose_config():
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    result = subprocess.run(
        [*command, "-f", "docker/compose.yaml", "--env-file", "docker/example.env", "config", "--format", "json"]
        if command == ["docker", "compose"] else
        [*command, "-f", "docker/compose.yaml", "--env-file", "docker/example.env", "config"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    if command == ["docker", "compose"]:
        return json.loads(result.stdout)
    import yaml

    return yaml.safe_load(result.stdout)


def test_compose_wires_label_studio_and_backend(compose_config):
    services = compose_config["services"]
    ls_env = services["label-studio"]["environment"]
    backend_env = services["labelloop"]["environment"]
    assert ls_env["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert backend_env["LABEL_STUDIO_URL"] == "http://label-studio:8080"
    assert backend_env["LABEL_STUDIO_API_KEY"] == ls_env["LABEL_STUDIO_USER_TOKEN"]
    assert any("/data" in str(v) for v in services["labelloop"]["volumes"])
    for service in services.values():
        for port in service["ports"]:
            assert str(port.get("host_ip", port) if isinstance(port, dict) else port).startswith("127.0.0.1")


def test_compose_backend_settings_are_ones_labelloop_reads():
    text = (ROOT / "docker/compose.yaml").read_text()
    backend_block = text.split("  labelloop:")[1]
    names = set(re.findall(r"^\s+(LABEL(?:LOOP|_STUDIO)_[A-Z_]+):", backend_block, flags=re.M))
    known = {f"LABELLOOP_{name.upper()}" for name in LabelLoopSettings.model_fields} | {
        "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"}
    assert names and names <= known, names - known


def test_dockerfile_matches_the_readme():
    torch_pin = re.search(r"ARG TORCH_SPEC=(\S+)", DOCKERFILE).group(1)
    assert f"pip install {torch_pin}" in README
    assert torch_pin in (ROOT / "scripts/setup.sh").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, flags=re.M).group(1))
    assert " ".join(cmd) in README
    assert 'pip install ".[backend]"' in DOCKERFILE and "pip install '.[backend]'" in README
