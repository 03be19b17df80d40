"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from gateway.http.app import build_app
from gateway.http.auth import resolve_api_token, token_matches
from gateway.metrics import Metrics
from gateway.pipeline import jobs
from gateway.settings import Settings


def _client(settings: Settings, sessions, token: str = "s3cret", **kwargs) -> TestClient:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    metrics.add_queue_collector(lambda: jobs.queue_depth(sessions))
    metrics.instances_received.inc(3)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return TestClient(build_app(settings, sessions, metrics, token, **kwargs))


def test_health_and_ready_answer_without_token(settings: Settings, sessions) -> None:
    client = _client(settings, sessions)
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_not_ready_when_a_check_fails(settings: Settings, sessions) -> None:
    client = _client(settings, sessions, checks=[lambda: "inference service unreachable"])
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "inference service unreachable" in response.json()["problems"]


def test_metrics_need_the_token_and_show_counters_and_queue(settings: Settings, sessions) -> None:
    client = _client(settings, sessions)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    text = client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    assert "gateway_instances_received_total 3.0" in text
    assert "gateway_jobs" in text


def test_token_is_generated_once_into_the_data_dir(settings: Settings) -> None:
    token = resolve_api_token(settings)
    path = settings.data_dir / "api-token"
    assert path.read_text().strip() == token and len(token) >= 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert resolve_api_token(settings) == token


def test_configured_token_wins_and_compare_is_exact() -> None:
    settings = Settings.load(None, api_token="from-flag")
    assert resolve_api_token(settings) == "from-flag"
    assert token_matches("Bearer from-flag", "from-flag")
    assert not token_matches("Bearer from-fla", "from-flag")
    assert not token_matches("Basic from-flag", "from-flag")
    assert not token_matches(None, "from-flag")


def test_metrics_bearer_is_case_insensitive(settings: Settings, sessions) -> None:
    client = _client(settings, sessions, "s3cret")
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.get("/metrics", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer \xa0", "bearer  ", "Bearer\t"])
def test_metrics_with_an_empty_token_admit_nobody(settings: Settings, sessions, header: str) -> None:
    client = _client(settings, sessions, "")
    assert client.get("/metrics", headers={"Authorization": header.encode("latin-1")}).status_code == 401
