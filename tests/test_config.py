"""Configuration: flag > environment > config.toml > default, validation messages, and the `herd` command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from herd_mesh import config
from herd_mesh.config import Config, resolve
from herd_mesh.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never read the real ~/.herd-mesh, and give every test a predictable hostname."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(config.socket, "gethostname", lambda: "Studio.local")
    return home


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these simple values
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def write_toml(data_dir: Path, values: dict[str, Any]) -> None:
    (data_dir / "config.toml").write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))


# name: (flag value, env var and value, config.toml value, expected for flag/env/file/default)
PRECEDENCE: dict[str, tuple[Any, tuple[str, str], Any, tuple[Any, Any, Any, Any]]] = {
    "host": ("10.0.0.1", ("HERD_HOST", "10.0.0.2"), "10.0.0.3", ("10.0.0.1", "10.0.0.2", "10.0.0.3", "0.0.0.0")),
    "port": (1001, ("HERD_PORT", "1002"), 1003, (1001, 1002, 1003, 11435)),
    "node_id": (
        "flag-node",
        ("HERD_NODE_ID", "env-node"),
        "file-node",
        ("flag-node", "env-node", "file-node", "Studio"),
    ),
    "mesh": ("flagmesh", ("HERD_MESH", "envmesh"), "filemesh", ("flagmesh", "envmesh", "filemesh", "default")),
    "peers": (
        ("http://a:1",),
        ("HERD_PEERS", "b:2, c"),
        ["d"],
        (("http://a:1",), ("http://b:2", "http://c:11435"), ("http://d:11435",), ()),
    ),
    "advertise": (
        ("10.1.1.1",),
        ("HERD_ADVERTISE", "10.1.1.2,10.1.1.3"),
        ["10.1.1.4"],
        (("10.1.1.1",), ("10.1.1.2", "10.1.1.3"), ("10.1.1.4",), ()),
    ),
    "mdns": (True, ("HERD_MDNS", "true"), False, (False, True, False, True)),  # the flag is --no-mdns
    "ollama_url": (
        "http://flag:1",
        ("OLLAMA_HOST", "envhost"),
        "http://file:3",
        ("http://flag:1", "http://envhost:11434", "http://file:3", "http://localhost:11434"),
    ),
    "log_level": ("debug", ("HERD_LOG_LEVEL", "WARNING"), "error", ("debug", "warning", "error", "info")),
}


@pytest.mark.parametrize("name", list(PRECEDENCE))
def test_precedence_flag_env_file_default(name: str, data_dir: Path) -> None:
    flag, (env_name, env_value), file_value, expected = PRECEDENCE[name]
    flag_key = "no_mdns" if name == "mdns" else name
    flags = {"data_dir": str(data_dir), flag_key: flag}
    env = {env_name: env_value}
    write_toml(data_dir, {name: file_value})

    assert getattr(resolve(flags, env), name) == expected[0]
    del flags[flag_key]
    assert getattr(resolve(flags, env), name) == expected[1]
    assert getattr(resolve(flags, {}), name) == expected[2]
    (data_dir / "config.toml").unlink()
    assert getattr(resolve(flags, {}), name) == expected[3]


def test_data_dir_comes_from_herd_data_dir(tmp_path: Path) -> None:
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    for d, mesh in ((env_dir, "envfile"), (flag_dir, "flagfile")):
        d.mkdir()
        write_toml(d, {"mesh": mesh})
    cfg = resolve({}, {"HERD_DATA_DIR": str(env_dir)})
    assert cfg.data_dir == env_dir
    assert cfg.mesh == "envfile"  # config.toml is read from that data dir
    cfg = resolve({"data_dir": str(flag_dir)}, {"HERD_DATA_DIR": str(env_dir)})
    assert (cfg.data_dir, cfg.mesh) == (flag_dir, "flagfile")


def test_default_data_dir_is_in_home(home: Path) -> None:
    assert resolve({}, {}).data_dir == home / ".herd-mesh"


def test_keys_other_modules_read_are_kept_and_unknown_keys_are_named(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_toml(data_dir, {"mesh": "lab", "whisper_model": "large-v3", "prot": 8000})
    cfg = resolve({"data_dir": str(data_dir)}, {})
    assert cfg.extra == {"whisper_model": "large-v3"}
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    message = caplog.records[0].getMessage()
    assert "unknown key 'prot' is ignored" in message and str(data_dir / "config.toml") in message
    for known in ("port", "peers", "ollama_url", "whisper_model"):
        assert known in message.split("known keys:")[1]


def test_empty_environment_values_count_as_unset(data_dir: Path) -> None:
    write_toml(data_dir, {"mesh": "filemesh"})
    assert resolve({"data_dir": str(data_dir)}, {"HERD_MESH": ""}).mesh == "filemesh"


def test_no_mdns_environment_forms(data_dir: Path) -> None:
    flags = {"data_dir": str(data_dir)}
    for text in ("false", "0", "no", "off", "FALSE"):
        assert resolve(flags, {"HERD_MDNS": text}).mdns is False
    for text in ("true", "1", "yes", "on"):
        assert resolve(flags, {"HERD_MDNS": text}).mdns is True


@pytest.mark.parametrize(
    ("ollama_host", "expected"),
    [
        ("0.0.0.0:11434", "http://localhost:11434"),  # what people set so Ollama listens on the LAN
        ("0.0.0.0", "http://localhost:11434"),
        ("localhost", "http://localhost:11434"),
        ("http://x:1234", "http://x:1234"),
        ("https://ollama.lan", "https://ollama.lan:11434"),
        ("192.168.1.9:8080/", "http://192.168.1.9:8080"),
        ("[::]:11434", "http://localhost:11434"),
        ("http://[fe80::1]:11434", "http://[fe80::1]:11434"),
    ],
)
def test_ollama_host_forms(ollama_host: str, expected: str, data_dir: Path) -> None:
    assert resolve({"data_dir": str(data_dir)}, {"OLLAMA_HOST": ollama_host}).ollama_url == expected


def test_default_node_id_is_the_short_hostname(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    assert config.default_node_id() == "Studio"
    assert config.default_node_id() == config.default_node_id()  # stable across calls (and restarts)
    assert resolve({"data_dir": str(data_dir)}, {}).node_id == "Studio"
    monkeypatch.setattr(config.socket, "gethostname", lambda: "Jane's MacBook Pro.local")
    node_id = config.default_node_id()
    assert node_id == "Jane-s-MacBook-Pro"
    assert resolve({"data_dir": str(data_dir)}, {}).node_id == node_id  # a valid node id
    monkeypatch.setattr(config.socket, "gethostname", lambda: "x" * 80)
    assert resolve({"data_dir": str(data_dir)}, {}).node_id == "x" * 48


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"port": 0}, {}, "--port must be an integer from 1 to 65535, got 0"),
        ({"port": 70000}, {}, "--port must be an integer from 1 to 65535"),
        ({}, {"HERD_PORT": "http"}, "HERD_PORT must be an integer from 1 to 65535, got 'http'"),
        ({}, {"HERD_PORT": "１"}, "HERD_PORT must be an integer"),
        ({}, {"HERD_PORT": "1_000"}, "HERD_PORT must be an integer"),
        ({"advertise": ("zzz",)}, {}, "--advertise must be an IPv4 address such as 192.168.1.20, got 'zzz'"),
        ({"advertise": ("1.2.3.4.5",)}, {}, "--advertise must be an IPv4 address"),
        ({}, {"HERD_ADVERTISE": "10.0.0.1, ::1"}, "HERD_ADVERTISE must be an IPv4 address"),
        ({"node_id": "my node!"}, {}, "node id 'my node!'"),
        ({"node_id": "-studio"}, {}, "node id"),
        ({"node_id": "n" * 49}, {}, "1-48"),
        ({"mesh": "bad name!"}, {}, "mesh name 'bad name!'"),
        ({"peers": ("ftp://studio",)}, {}, "--peer"),
        ({"peers": ("studio:notaport",)}, {}, "--peer"),
        ({}, {"HERD_PEERS": "studio:99999"}, "HERD_PEERS"),
        ({"peers": ("http://",)}, {}, "--peer"),
        ({"peers": ("not a url",)}, {}, "--peer needs an http(s) URL such as http://192.168.1.20:11435"),
        ({"peers": ("http://studio:11435/api",)}, {}, "--peer needs an http(s) URL"),
        ({"peers": ("studio/api",)}, {}, "--peer needs an http(s) URL"),
        ({"peers": ("http://studio:11435?x=1",)}, {}, "--peer needs an http(s) URL"),
        ({"peers": ("http://studio?",)}, {}, "--peer needs an http(s) URL"),
        ({"peers": ("http://studio#top",)}, {}, "--peer needs an http(s) URL"),
        ({"peers": ("http://me@studio",)}, {}, "--peer needs an http(s) URL"),
        ({"log_level": "loud"}, {}, "log level"),
        ({}, {"HERD_MDNS": "maybe"}, "HERD_MDNS must be true or false"),
        ({}, {"OLLAMA_HOST": "localhost:port"}, "OLLAMA_HOST"),
        ({"ollama_url": "ftp://studio"}, {}, "--ollama-url needs an http(s) URL such as http://localhost:11434"),
    ],
)
def test_invalid_values_raise_config_error_naming_them(
    flags: dict[str, Any], env: dict[str, str], message: str, data_dir: Path
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve({"data_dir": str(data_dir), **flags}, env)


def test_a_bad_config_file_names_the_file(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("mesh = \n")
    with pytest.raises(ConfigError, match=re.escape(str(data_dir / "config.toml"))):
        resolve({"data_dir": str(data_dir)}, {})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("port", "eleven", "must be an integer from 1 to 65535"),
        ("port", True, "must be an integer from 1 to 65535"),
        ("advertise", 5, "must be a string or a list of strings"),
        ("advertise", ["10.0.0.1", 2], "must be a string or a list of strings"),
        ("advertise", "studio.local", "must be an IPv4 address"),
        ("peers", [1, 2], "must be a string or a list of strings"),
        ("node_id", True, "must be a string"),
        ("mesh", 5, "must be a string"),
        ("ollama_url", 5, "must be a string"),
        ("host", ["0.0.0.0"], "must be a string"),
        ("log_level", 1, "must be a string"),
        ("mdns", 5, "must be true or false"),
    ],
)
def test_a_bad_value_in_the_config_file_names_the_key_and_the_file(
    data_dir: Path, key: str, value: Any, allowed: str
) -> None:
    write_toml(data_dir, {key: value})
    with pytest.raises(ConfigError, match=re.escape(f"'{key}' in {data_dir / 'config.toml'} {allowed}")):
        resolve({"data_dir": str(data_dir)}, {})


def test_a_fractional_port_in_the_config_file_is_refused_not_truncated(data_dir: Path) -> None:
    (data_dir / "config.toml").write_text("port = 1.5\n")
    with pytest.raises(ConfigError, match=r"'port' in .* must be an integer from 1 to 65535, got 1.5"):
        resolve({"data_dir": str(data_dir)}, {})


def test_fleet_manager_data_dir_is_refused(home: Path) -> None:
    for given in ("~/.fleet-manager", str(home / ".fleet-manager"), str(home / ".fleet-manager") + "/"):
        with pytest.raises(ConfigError, match="fleet-manager"):
            resolve({"data_dir": given}, {})
    with pytest.raises(ConfigError, match="fleet-manager"):
        resolve({}, {"HERD_DATA_DIR": "~/.fleet-manager"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("studio", "http://studio:11435"),
        ("studio.local:8000", "http://studio.local:8000"),
        ("192.168.1.20", "http://192.168.1.20:11435"),
        ("https://studio", "https://studio:11435"),
        (" http://studio:1234/ ", "http://studio:1234"),
        ("[::1]", "http://[::1]:11435"),
    ],
)
def test_normalise_peer_url_adds_the_default_port(text: str, expected: str) -> None:
    assert config.normalise_peer_url(text) == expected


def make(**fields: Any) -> Config:
    return Config(node_id="studio", data_dir=Path("/tmp/unused"), **fields)


def test_advertised_addresses_explicit_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "lan_ipv4_addresses", lambda: ["192.168.1.5"])
    cfg = make(host="0.0.0.0", advertise=("10.0.0.7", "10.0.0.8"))
    assert cfg.advertised_addresses() == ["10.0.0.7", "10.0.0.8"]
    assert cfg.url == "http://10.0.0.7:11435"


def test_advertised_addresses_specific_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "lan_ipv4_addresses", lambda: ["192.168.1.5"])
    assert make(host="127.0.0.2", port=9000).advertised_addresses() == ["127.0.0.2"]
    assert make(host="127.0.0.2", port=9000).url == "http://127.0.0.2:9000"


def test_advertised_addresses_wildcard_uses_lan_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "lan_ipv4_addresses", lambda: ["192.168.1.5", "10.0.0.3"])
    assert make(host="0.0.0.0").advertised_addresses() == ["192.168.1.5", "10.0.0.3"]
    monkeypatch.setattr(config, "lan_ipv4_addresses", lambda: [])
    assert make(host="0.0.0.0").advertised_addresses() == ["127.0.0.1"]  # no LAN: at least this machine


def test_lan_ipv4_addresses_skips_loopback() -> None:
    found = config.lan_ipv4_addresses()
    assert all(not a.startswith("127.") and ":" not in a for a in found)


# -- the command line ---------------------------------------------------------------------------------------

FLAG_ENV = {
    "--host": "HERD_HOST",
    "--port": "HERD_PORT",
    "--node-id": "HERD_NODE_ID",
    "--data-dir": "HERD_DATA_DIR",
    "--mesh": "HERD_MESH",
    "--advertise": "HERD_ADVERTISE",
    "--peer": "HERD_PEERS",
    "--no-mdns": "HERD_MDNS",
    "--ollama-url": "OLLAMA_HOST",
    "--log-level": "HERD_LOG_LEVEL",
}


def herd(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERD_") and k != "OLLAMA_HOST"}
    env.update(HOME=str(home), HERD_DATA_DIR=str(home / "data"), COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "herd_mesh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def test_help_documents_every_flag_and_its_environment_variable(home: Path) -> None:
    result = herd("--help", home=home)
    assert result.returncode == 0, result.stderr
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", result.stdout):
        match = re.match(r"\s+(--[a-z-]+)", block)
        if match:
            blocks[match.group(1)] = block
    for flag, env_name in FLAG_ENV.items():
        assert flag in blocks, f"{flag} missing from herd --help"
        assert env_name in blocks[flag], f"{flag}'s help does not name {env_name}"


def test_a_bad_mesh_name_exits_non_zero_with_a_message(home: Path) -> None:
    result = herd("--mesh", "bad name!", home=home)
    assert result.returncode != 0
    assert "mesh name 'bad name!'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--advertise", "zzz"), "--advertise must be an IPv4 address"),
        (("--peer", "http://studio:11435/path"), "--peer needs an http(s) URL"),
        (("--data-dir", "/proc/nope"), "cannot create the data directory /proc/nope"),
    ],
)
def test_bad_values_exit_2_with_a_message_not_a_traceback(args: tuple[str, ...], message: str, home: Path) -> None:
    result = herd(*args, home=home)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_peer_port_exits_with_a_message_not_a_traceback(home: Path) -> None:
    result = herd("--peer", "studio:notaport", home=home)
    assert result.returncode != 0
    assert "--peer" in result.stderr
    assert "Traceback" not in result.stderr
