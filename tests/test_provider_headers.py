"""What real accounts need: extra headers, `${VAR}` in them, a query in base_url, api_key_header,
organization and project, seen on the fake server's recorded requests.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
from fake_openai import FakeOpenAI, Reply, Request, error_body, stream_reply

from convmgr.model import message_item
from convmgr.providers.base import Provider, ProviderError, ProviderEvent, TextDelta, TurnRequest
from convmgr.providers.config import load_registry

pytestmark = pytest.mark.anyio

KEY = "sk-hdr-Vb6Nq2Zr8Lw4Xk1T"
KEY_ENV = "CONVMGR_HEADERS_TEST_KEY"
TOKEN = "gw-Pm3Ks8Qd1Yt6Hn9R"
TOKEN_ENV = "CONVMGR_HEADERS_TEST_TOKEN"
KINDS = ["openai-chat", "openai-responses"]
PATHS = {"openai-chat": "/v1/chat/completions", "openai-responses": "/v1/responses"}


@pytest.fixture(autouse=True)
def variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key and the gateway token in the environment."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def write_config(tmp_path: Path, kind: str, base_url: str, table: str) -> Path:
    """A file with one provider `p` of that kind, its table's other lines given (no retries)."""
    path = tmp_path / "config.toml"
    retries = "" if "max_retries" in table else "max_retries = 0\n"
    path.write_text(
        f'default_provider = "p"\n\n[providers.p]\nkind = "{kind}"\nbase_url = "{base_url}"\n'
        f'default_model = "m"\n{retries}{table}'
    )
    return path


async def run_turn(path: Path) -> tuple[list[ProviderEvent], ProviderError | None]:
    """One turn of the configured default provider: its events, and its error if it failed."""
    registry = load_registry(path)
    provider: Provider = registry.get(None)
    request = TurnRequest(
        model="m", instructions=None, history=[message_item("user", "hi")], input_text="hi"
    )
    events: list[ProviderEvent] = []
    try:
        async with aclosing(provider.stream(request)) as stream:  # type: ignore[type-var]
            async for event in stream:
                events.append(event)
    except ProviderError as exc:
        return events, exc
    finally:
        await registry.aclose()
    return events, None


def text_of(events: Sequence[ProviderEvent]) -> str:
    """The reply's text."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def ok(request: Request, reply: Reply) -> None:
    """A short, whole reply in the endpoint's format."""
    await stream_reply(request, reply, ["fine"])


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_of_header_is_sent(tmp_path: Path, kind: str) -> None:
    async with FakeOpenAI(ok) as server:
        path = write_config(
            tmp_path,
            kind,
            server.base_url,
            f'api_key_env = "{KEY_ENV}"\norganization = "org-Abc123"\nproject = "proj_Xyz"\n'
            f'headers = {{ "HTTP-Referer" = "https://example.org/app", "X-Title" = "My app", '
            f'"X-Gateway-Token" = "tok ${{{TOKEN_ENV}}}", "User-Agent" = "my-agent/2" }}\n',
        )
        events, error = await run_turn(path)
    assert error is None
    assert text_of(events) == "fine"
    (request,) = server.requests
    assert request.path == PATHS[kind]
    headers = request.headers
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["openai-organization"] == "org-Abc123"
    assert headers["openai-project"] == "proj_Xyz"
    assert headers["http-referer"] == "https://example.org/app"
    assert headers["x-title"] == "My app"
    # `${NAME}` expanded from the environment, the text around it kept.
    assert headers["x-gateway-token"] == f"tok {TOKEN}"
    # A configured header replaces convmgr's default of the same name.
    assert headers["user-agent"] == "my-agent/2"
    assert headers["accept"] == "text/event-stream"
    assert "api-key" not in headers


@pytest.mark.parametrize("kind", KINDS)
async def test_api_key_header_carries_the_key_alone(tmp_path: Path, kind: str) -> None:
    async with FakeOpenAI(ok) as server:
        table = f'api_key_env = "{KEY_ENV}"\napi_key_header = "api-key"\n'
        _, error = await run_turn(write_config(tmp_path, kind, server.base_url, table))
    assert error is None
    (request,) = server.requests
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers
    assert "openai-organization" not in request.headers


@pytest.mark.parametrize("kind", KINDS)
async def test_a_query_in_base_url_goes_on_every_request_after_the_path(
    tmp_path: Path, kind: str
) -> None:
    attempts = 0

    async def flaky(request: Request, reply: Reply) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await reply.json_response(503, error_body("busy"))
        else:
            await ok(request, reply)

    async with FakeOpenAI(flaky) as server:
        # Azure's deployment URL, with the trailing slash people paste.
        base = server.base_url.replace("/v1", "/openai/deployments/gpt-4o/")
        path = write_config(
            tmp_path,
            kind,
            f"{base}?api-version=2024-10-21",
            f'api_key_env = "{KEY_ENV}"\napi_key_header = "api-key"\nmax_retries = 1\n'
            "retry_base_delay_s = 0.01\n",
        )
        events, error = await run_turn(path)
    assert error is None
    assert text_of(events) == "fine"
    endpoint = PATHS[kind].removeprefix("/v1")
    assert [(r.path, r.query) for r in server.requests] == [
        (f"/openai/deployments/gpt-4o{endpoint}", "api-version=2024-10-21")
    ] * 2


async def test_an_error_does_not_show_the_query(tmp_path: Path) -> None:
    # Nothing listens there: the message names the endpoint without its query,
    # which some gateways use for a key.
    path = write_config(
        tmp_path, "openai-chat", "http://127.0.0.1:9/v1?key=sk-in-the-query-123456", ""
    )
    _, error = await run_turn(path)
    assert error is not None
    assert "could not connect to http://127.0.0.1:9/v1/chat/completions" in error.message
    assert "sk-in-the-query" not in error.message


@pytest.mark.parametrize("kind", KINDS)
async def test_a_provider_echoing_a_header_value_has_it_blanked(tmp_path: Path, kind: str) -> None:
    async def echo_headers(request: Request, reply: Reply) -> None:
        seen = request.headers["x-gateway-token"]
        await reply.json_response(403, error_body(f"token {seen} refused", f"bad_{seen}"))

    async with FakeOpenAI(echo_headers) as server:
        table = f'headers = {{ "X-Gateway-Token" = "${{{TOKEN_ENV}}}" }}\n'
        _, error = await run_turn(write_config(tmp_path, kind, server.base_url, table))
    assert error is not None
    assert (error.message, error.code) == ("HTTP 403: token *** refused", "bad_***")


# --- through the real binary -----------------------------------------------------------


def server_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of `python -m convmgr`: no user directories, these variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONVMGR_CONFIG", KEY_ENV, TOKEN_ENV)}
    env.update(
        {
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            **variables,
        }
    )
    return env


async def test_an_unset_variable_stops_the_server_with_one_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "openai-chat",
        "https://openrouter.ai/api/v1",
        f'headers = {{ "X-Title" = "convmgr", "X-Gateway-Token" = "${{{TOKEN_ENV}}}" }}\n',
    )
    command = [sys.executable, "-m", "convmgr", "--config", str(path), "--no-store"]
    process = await anyio.open_process(command, env=server_env(tmp_path))
    async with process:
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        # The client closes stdin at once: the server must still say why it stops.
        await process.stdin.aclose()
        with anyio.fail_after(30):  # a failure guard only
            stdout = b"".join([chunk async for chunk in process.stdout])
            stderr = b"".join([chunk async for chunk in process.stderr]).decode()
            assert await process.wait() == 2
    assert stdout == b""
    assert stderr.count("\n") == 1, stderr
    assert stderr.strip().endswith(
        f"{path}: [providers.p.headers] X-Gateway-Token: the environment variable "
        f"{TOKEN_ENV} is not set"
    )


async def test_the_server_sends_the_expanded_header_and_never_shows_it(tmp_path: Path) -> None:
    async def echo_headers(request: Request, reply: Reply) -> None:
        seen = request.headers.get("x-gateway-token", "")
        await reply.json_response(403, error_body(f"token {seen} refused"))

    async with FakeOpenAI(echo_headers) as server:
        path = write_config(
            tmp_path,
            "openai-responses",
            f"{server.base_url}?api-version=preview",
            f'headers = {{ "X-Gateway-Token" = "${{{TOKEN_ENV}}}" }}\n',
        )
        messages = [
            {"id": 1, "method": "newConversation", "params": {"conversationId": "c"}},
            {
                "id": 2,
                "method": "sendUserTurn",
                "params": {"conversationId": "c", "input": [{"type": "text", "text": "hi"}]},
            },
        ]
        stdin = "".join(json.dumps(m) + "\n" for m in messages).encode()
        command = [
            sys.executable, "-m", "convmgr", "--config", str(path), "--no-store",
            "--log-level", "debug",
        ]  # fmt: skip
        with anyio.fail_after(30):  # a failure guard only
            result = await anyio.run_process(
                command, input=stdin, check=False, env=server_env(tmp_path, **{TOKEN_ENV: TOKEN})
            )
    assert result.returncode == 0, result.stderr.decode()
    (request,) = server.requests
    assert request.headers["x-gateway-token"] == TOKEN
    assert (request.path, request.query) == ("/v1/responses", "api-version=preview")
    out = [json.loads(line) for line in result.stdout.splitlines()]
    (failed,) = [
        m["params"]["event"]
        for m in out
        if m.get("method") == "conversation/event" and m["params"]["event"]["type"] == "turnFailed"
    ]
    assert failed["error"]["message"] == "HTTP 403: token *** refused"
    assert result.stderr, "debug logging produced nothing: the check below proves little"
    for stream in (result.stdout, result.stderr):
        assert TOKEN.encode() not in stream
