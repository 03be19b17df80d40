"""`gateway config check`: effective settings with secrets masked; flags > GATEWAY_* > --config TOML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SECRET_TOKEN = "tok-3c1f9e2d7a"
SECRET_PASSWORD = "pw-9b8e7d6c"


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=environment, capture_output=True, text=True, timeout=60
    )


def check(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = gateway("config", "check", *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "settings OK" in done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_defaults(tmp_path: Path) -> None:
    data = check("--data-dir", str(tmp_path))
    assert data["dicom_port"] == 11112
    assert data["ae_title"] == "GATEWAY"
    assert data["dicom"]["duplicate_policy"] == "reject-different"
    assert data["api_token"] is None
    assert data["index_url"] == f"sqlite:///{(tmp_path / 'index.sqlite3').resolve()}"


def test_secrets_are_masked(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://gateway:{SECRET_PASSWORD}@db.example:5432/gateway"
    done = gateway(
        "config", "check", "--data-dir", str(tmp_path), "--api-token", SECRET_TOKEN, "--database-url", url
    )
    assert done.returncode == 0, done.stderr
    assert SECRET_TOKEN not in done.stdout + done.stderr
    assert SECRET_PASSWORD not in done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["api_token"] == "**********"
    assert data["database_url"] == "postgresql+psycopg://gateway:**********@db.example:5432/gateway"
    assert data["index_url"] == data["database_url"]


def test_secret_from_environment_is_masked(tmp_path: Path) -> None:
    done = gateway("config", "check", "--data-dir", str(tmp_path), env={"GATEWAY_API_TOKEN": SECRET_TOKEN})
    assert done.returncode == 0, done.stderr
    assert SECRET_TOKEN not in done.stdout
    assert json.loads(done.stdout)["api_token"] == "**********"


def test_password_in_query_is_masked(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://gateway@db.example/gateway?password={SECRET_PASSWORD}"
    done = gateway("config", "check", "--data-dir", str(tmp_path), "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert SECRET_PASSWORD not in done.stdout


def test_precedence_flags_env_toml(tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        f'data_dir = "{tmp_path / "from-toml"}"\n'
        "dicom_port = 1111\n"
        "http_port = 2222\n"
        'ae_title = "FROM-TOML"\n'
        "stable_age = 5.0\n"
        "[dicom]\n"
        'duplicate_policy = "overwrite"\n'
        "max_associations = 3\n"
        "[[dicom.peers]]\n"
        'ae_title = "MODALITY"\n'
        'hosts = ["10.0.0.0/8"]\n'
    )
    env = {
        "GATEWAY_DICOM_PORT": "3333",
        "GATEWAY_AE_TITLE": "FROM-ENV",
        "GATEWAY_DICOM__MAX_ASSOCIATIONS": "4",
    }
    data = check("--config", str(toml), "--dicom-port", "4444", env=env)
    assert data["dicom_port"] == 4444  # flag beats env and file
    assert data["ae_title"] == "FROM-ENV"  # env beats file
    assert data["http_port"] == 2222  # file beats default
    assert data["stable_age"] == 5.0
    assert data["data_dir"] == str(tmp_path / "from-toml")
    # nested sections merge field by field across sources
    assert data["dicom"]["max_associations"] == 4
    assert data["dicom"]["duplicate_policy"] == "overwrite"
    assert data["dicom"]["peers"] == [
        {"ae_title": "MODALITY", "hosts": ["10.0.0.0/8"], "port": None, "waits_for_commitment": False}
    ]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--dicom-port", "70000"], {}, "dicom_port"),
        (["--ae-title", "BACK\\SLASH"], {}, "invalid AE title"),
        (["--stable-age", "0"], {}, "stable_age"),
        ([], {"GATEWAY_DICOM__MAX_ASSOCIATIONS": "0"}, "dicom.max_associations"),
        ([], {"GATEWAY_DICOM__DUPLICATE_POLICY": "sometimes"}, "duplicate_policy"),
        ([], {"GATEWAY_DICOM__TLS__ENABLED": "true"}, "dicom.tls.enabled needs dicom.tls.cert"),
    ],
)
def test_invalid_settings_exit_2(args: list[str], env: dict[str, str], message: str, tmp_path: Path) -> None:
    done = gateway("config", "check", "--data-dir", str(tmp_path), *args, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "gateway: invalid settings" in done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('dicom_port = "not a port"\n', "dicom_port"),
        ("[dicom]\nmin_free_bytes = -1\n", "dicom.min_free_bytes"),
        ('[[dicom.peers]]\nae_title = "X"\nhosts = ["not-an-ip"]\n', "not-an-ip"),
        ("dicom_port = \n", "invalid settings"),
        ("unknown_top_level = 1\n", "unknown_top_level"),
    ],
)
def test_invalid_toml_exit_2(text: str, message: str, tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text(text)
    done = gateway("config", "check", "--config", str(toml))
    assert done.returncode == 2
    assert message in done.stderr


def test_unknown_key_in_a_section_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text("[dicom]\nmax_asociations = 4\n")
    done = gateway("config", "check", "--config", str(toml))
    assert done.returncode == 2


def test_missing_config_file_exit_2(tmp_path: Path) -> None:
    done = gateway("config", "check", "--config", str(tmp_path / "absent.toml"))
    assert done.returncode == 2
    assert "config file not found" in done.stderr
