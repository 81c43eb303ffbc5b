"""The API key and header values never reach a turn's events or the logs, wherever a provider
echoes them.

Providers on the fake server put the secret (the key, or the value of a header
from `headers`) in every string of their errors: message, code, type, param, a
retried error, a plain-text body, a stream that is not JSON. The turns run
through the manager; what it emits (turnFailed, streamError) and every log
record are searched for any 8 characters of the secret.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from fake_openai import FakeOpenAI, Reply, Request, responses_event, sse_bytes
from recorder import Recorder

from convmgr.core.manager import ConversationManager
from convmgr.model import ConversationSettings, TurnSettings
from convmgr.providers.config import load_registry
from convmgr.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

KEY = "sk-Rd7Qz2Lw9Xm4Tb8Vn3Kp"
KEY_ENV = "CONVMGR_REDACTION_TEST_KEY"
# The value of a configured header, expanded from this variable at start-up.
HEADER = "gw-Tn4Pz7Qa2Wc9Lx5M"
HEADER_ENV = "CONVMGR_REDACTION_TEST_HEADER"
KINDS = ["chat", "responses"]
# Which secret the provider echoes.
SECRETS = ["key", "header"]
# A key as repr() and JSON would escape it (a backslash, both quotes).
ODD_KEY = "sk-Hj5\\Wq'8Zr\"3Lm6Yc"


def leaks(text: str, key: str = KEY) -> list[str]:
    """The pieces of the key (8 characters or more) that the text shows."""
    return [key[i : i + 8] for i in range(len(key) - 7) if key[i : i + 8] in text]


# --- what the providers answer ----------------------------------------------------


def stream_error(request: Request, error: dict[str, Any]) -> bytes:
    """An error object inside the stream, as the endpoint asked sends it."""
    if request.path.endswith("/responses"):
        event = responses_event("response.failed", response={"error": error})
        return sse_bytes(event, event="response.failed")
    return sse_bytes({"error": error})


async def error_fields(request: Request, reply: Reply, key: str) -> None:
    """A stream error with the key in its message, code, type and param."""
    await reply.start()
    error = {
        "message": f"no access for {key}",
        "type": f"invalid_{key}",
        "code": f"key_{key}",
        "param": f"param_{key}",
    }
    await reply.chunk(stream_error(request, error))


async def flat_error(request: Request, reply: Reply, key: str) -> None:
    """An error event with its fields at the top (Responses `error`, vLLM's chat error)."""
    await reply.start()
    if request.path.endswith("/responses"):
        error = responses_event(
            "error", message=f"no access for {key}", code=f"key_{key}", param=f"param_{key}"
        )
        await reply.chunk(sse_bytes(error, event="error"))
    else:
        error = {
            "object": "error",
            "message": f"no access for {key}",
            "type": f"key_{key}",
            "param": f"param_{key}",
        }
        await reply.chunk(sse_bytes(error))


async def type_only(request: Request, reply: Reply, key: str) -> None:
    """A stream error with no code: its type (holding the key) is the code."""
    await reply.start()
    await reply.chunk(stream_error(request, {"message": "denied", "type": f"denied_{key}"}))


async def transient(request: Request, reply: Reply, key: str) -> None:
    """A stream error worth a retry (a server error), the key in its message and code."""
    await reply.start()
    error = {"message": f"overloaded by {key}", "type": "server_error", "code": f"busy_{key}"}
    await reply.chunk(stream_error(request, error))


async def text_status(request: Request, reply: Reply, key: str) -> None:
    """A plain-text 400 whose key sits where a 300-character cut would fall."""
    body = ("x" * 290 + key + " and more").encode()
    await reply._send_head(400, {"Content-Length": str(len(body)), "Content-Type": "text/plain"})
    await reply._stream.send(body)
    reply.ended = True


async def text_retry(request: Request, reply: Reply, key: str) -> None:
    """A plain-text 503 (retried) with the key in it."""
    body = f"upstream rejected {key}".encode()
    await reply._send_head(503, {"Content-Length": str(len(body)), "Content-Type": "text/plain"})
    await reply._stream.send(body)
    reply.ended = True


async def json_status(request: Request, reply: Reply, key: str) -> None:
    """A 401 JSON error with the key in its message and code."""
    await reply.json_response(401, {"error": {"message": f"bad {key}", "code": f"invalid_{key}"}})


async def json_not_a_stream(request: Request, reply: Reply, key: str) -> None:
    """A 200 JSON error instead of a stream, the key in its message and code."""
    await reply.json_response(200, {"error": {"message": f"bad {key}", "code": f"no_{key}"}})


async def garbage(request: Request, reply: Reply, key: str) -> None:
    """A stream event that is not JSON, the key where a 300-character cut would fall."""
    await reply.start()
    await reply.chunk(("data: {" + "y" * 280 + key + " not json\n\n").encode())


Scenario = Callable[[Request, Reply, str], Awaitable[None]]
SCENARIOS: dict[str, Scenario] = {
    "error-fields": error_fields,
    "flat-error": flat_error,
    "type-only": type_only,
    "transient": transient,
    "text-status": text_status,
    "text-retry": text_retry,
    "json-status": json_status,
    "json-not-a-stream": json_not_a_stream,
    "garbage": garbage,
}


def config(tmp_path: Path, server: FakeOpenAI) -> Path:
    """A chat and a responses provider on the fake server, one retry each, with a secret header."""
    path = tmp_path / "config.toml"
    tables = "".join(
        f"""
[providers.{kind}]
kind = "openai-{kind}"
base_url = "{server.base_url}"
api_key_env = "{KEY_ENV}"
default_model = "echo"
max_retries = 1
retry_base_delay_s = 0.01
headers = {{ "X-Title" = "convmgr tests", "X-Gateway-Token" = "${{{HEADER_ENV}}}" }}
"""
        for kind in KINDS
    )
    path.write_text('default_provider = "chat"\n' + tables)
    return path


async def run_turns(
    tmp_path: Path, kind: str, names: list[str], echoed: str
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Each scenario's turn through the manager, echoing one secret: its events; the requests."""
    recorder = Recorder()

    async def handler(request: Request, reply: Reply) -> None:
        # Whatever the provider echoes, it echoes the secret it was sent.
        headers = request.headers
        secret = headers["authorization"].removeprefix("Bearer ")
        if echoed == "header":
            secret = headers["x-gateway-token"]
        await SCENARIOS[request.json()["model"]](request, reply, secret)

    async with FakeOpenAI(handler) as server:
        registry = load_registry(config(tmp_path, server))
        try:
            async with ConversationManager(MemoryStore(), registry, recorder) as manager:
                with anyio.fail_after(30):  # a failure guard only
                    for name in names:
                        settings = ConversationSettings(provider=kind, model=name)
                        await manager.new_conversation(name, settings)
                        manager.send_user_turn(name, ["hi"], TurnSettings())
                    for name in names:
                        await recorder.wait_for(name, "turnFailed")
                await manager.close_all()
        finally:
            await registry.aclose()
    return {name: recorder.of(name) for name in names}, len(server.requests)


def failure_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The error of the turn's turnFailed."""
    (error,) = [e["error"] for e in events if e["type"] == "turnFailed"]
    return error  # type: ignore[no-any-return]


def retries_of(events: list[dict[str, Any]]) -> list[str]:
    """The messages of the turn's streamError events."""
    return [e["message"] for e in events if e["type"] == "streamError"]


@pytest.mark.parametrize("echoed", SECRETS)
@pytest.mark.parametrize("kind", KINDS)
async def test_no_error_string_from_the_provider_shows_a_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    echoed: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(HEADER_ENV, HEADER)
    events, requests = await run_turns(tmp_path, kind, list(SCENARIOS), echoed)

    shown = json.dumps(events)
    assert caplog.records
    for secret in (KEY, HEADER):
        assert leaks(shown, secret) == [], shown
        assert leaks(caplog.text, secret) == [], caplog.text

    # The errors still say what went wrong, with the key blanked out.
    assert failure_of(events["error-fields"]) == {"message": "no access for ***", "code": "key_***"}
    assert failure_of(events["flat-error"]) == {"message": "no access for ***", "code": "key_***"}
    assert failure_of(events["type-only"]) == {"message": "denied", "code": "denied_***"}
    assert retries_of(events["transient"]) == ["overloaded by ***"]
    assert failure_of(events["transient"]) == {
        "message": "overloaded by *** (gave up after 2 attempts)",
        "code": "busy_***",
    }
    assert failure_of(events["text-status"]) == {
        "message": "HTTP 400: " + "x" * 290 + "*** and more",
        "code": "http_400",
    }
    assert retries_of(events["text-retry"]) == ["HTTP 503: upstream rejected ***"]
    assert failure_of(events["text-retry"])["code"] == "http_503"
    assert failure_of(events["json-status"]) == {
        "message": "HTTP 401: bad ***",
        "code": "invalid_***",
    }
    assert failure_of(events["json-not-a-stream"]) == {"message": "bad ***", "code": "no_***"}
    garbled = failure_of(events["garbage"])
    assert garbled["code"] == "bad_stream"
    assert garbled["message"].endswith("y" * 280 + "*** not json'")
    # The retries were logged (redacted too), and only the retried scenarios retried.
    assert "overloaded by ***" in caplog.text
    assert "HTTP 503: upstream rejected ***" in caplog.text
    assert requests == len(SCENARIOS) + 2


@pytest.mark.parametrize("echoed", SECRETS)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_secret_that_repr_or_json_would_escape_is_blanked_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    echoed: str,
) -> None:
    # A stream that is not JSON is quoted with repr(), which doubles a
    # backslash: the secret must be found in that form too.
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, ODD_KEY if echoed == "key" else KEY)
    monkeypatch.setenv(HEADER_ENV, ODD_KEY if echoed == "header" else HEADER)
    names = ["garbage", "error-fields", "flat-error", "text-status"]
    events, _ = await run_turns(tmp_path, kind, names, echoed)

    shown = json.dumps(events)
    for form in (ODD_KEY, repr(ODD_KEY)[1:-1], json.dumps(ODD_KEY)[1:-1]):
        assert leaks(shown, form) == [], shown
        assert leaks(caplog.text, form) == [], caplog.text
    assert failure_of(events["garbage"])["message"].endswith("*** not json'")
    assert failure_of(events["error-fields"]) == {"message": "no access for ***", "code": "key_***"}
