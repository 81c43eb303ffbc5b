"""The examples run, and the recorded transcript still describes the real server.

examples/transcript.jsonl is a whole session with `convmgr --no-store`: every
message the client sent and everything the server wrote back, in order. The
replay sends the same messages, one at a time, to the real binary and
compares what comes back step by step, with the fields that differ from run to
run masked (server-made UUIDs, times, cursors, durations, the server's
version). A UUID is masked by its order of first appearance, so the replay
still checks that a turn's events carry the turnId its response gave.

The session is lock-step, so each step's output is fixed: after a request the
client reads up to its response, and after a `sendUserTurn` also up to that
turn's terminal event; after `exit`, to the end of output.

When the protocol changes on purpose, record the transcript again (the client
messages stay, the server's are replaced) and review the diff:

    python tests/test_examples.py --record

docs/protocol.md is checked here too: it names every method, server request,
notification, event type, history item type, error code, capability and
configuration key of tools, and the messages it shows have today's shapes.
Its sections on the other front ends (15, `convmgr acp`; 16, `convmgr mcp`)
name every method the dialect registers, every tool, update kind, stop reason
and error code its code has (read from the code, not listed here), and every
message they show passes the official ACP schema or MCP types strictly.

examples/tool_client.py is the README's tools example, character for
character: a test runs it and another checks the two are the same text.
"""

import ast
import json
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from client import Client, server_env

from convmgr.dialects.convmgr import events, items
from convmgr.dialects.convmgr.errors import ConvmgrCode, ErrorCode
from convmgr.dialects.convmgr.lifecycle import ServerCapabilities
from convmgr.dialects.convmgr.schema import METHODS, NOTIFICATIONS, SERVER_REQUESTS
from convmgr.providers.config_model import ConfigFile, McpServerConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
TRANSCRIPT = EXAMPLES / "transcript.jsonl"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
# docs/protocol.md's sections on `convmgr acp` and `convmgr mcp`.
ACP_SECTION, MCP_SECTION = 15, 16
SERVER_ARGS = ("--no-store",)
TERMINAL = frozenset({"turnComplete", "turnAborted", "turnFailed"})
# A guard against a hang, never a wait: every read returns as soon as its message is there.
TIMEOUT = 60

Message = Any
Step = tuple[Message, list[Message]]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# --- the transcript -----------------------------------------------------------------


def load_transcript(path: Path = TRANSCRIPT) -> list[Step]:
    """The recorded steps: each client message with the server messages that followed it."""
    steps: list[Step] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        entry = json.loads(line)
        if entry["from"] == "client":
            steps.append((entry["message"], []))
        elif entry["from"] == "server" and steps:
            steps[-1][1].append(entry["message"])
        else:
            raise AssertionError(f"{path.name}:{number}: not a transcript line: {line[:80]}")
    return steps


def play(client: Client, message: Message) -> list[Message]:
    """Send one client message; what the server writes up to the end of this step."""
    client.send(message)
    if "id" not in message:
        # A notification is never answered; after `exit` the output ends.
        return client.read_until_eof(TIMEOUT) if message["method"] == "exit" else []
    out = []
    while True:
        reply = client.read_message(TIMEOUT)
        out.append(reply)
        if "method" not in reply and reply.get("id") == message["id"]:
            break
    turn_id = reply.get("result", {}).get("turnId") if message["method"] == "sendUserTurn" else None
    while turn_id is not None:
        event = client.read_message(TIMEOUT)
        out.append(event)
        params = event.get("params", {})
        if params.get("turnId") == turn_id and params["event"]["type"] in TERMINAL:
            break
    return out


def mask(value: Any, uuids: dict[str, str], key: str = "") -> Any:
    """`value` with what varies between runs replaced by placeholders (see the module doc)."""
    if isinstance(value, dict):
        server_info = value.get("name") == "convmgr"
        return {
            k: "<version>" if server_info and k == "version" else mask(v, uuids, k)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v, uuids) for v in value]
    if isinstance(value, str):
        if _UUID.match(value):
            return uuids.setdefault(value, f"<uuid {len(uuids) + 1}>")
        if _TIME.match(value):
            return "<time>"
        if key == "nextCursor":
            return "<cursor>"
    if key.endswith("Ms") and isinstance(value, int):
        return "<duration>"
    return value


def record(path: Path = TRANSCRIPT) -> None:
    """Run the transcript's client messages against the server; rewrite it with the answers."""
    import tempfile

    lines = []
    with tempfile.TemporaryDirectory() as home:
        client = Client(SERVER_ARGS, env=server_env(Path(home)))
        try:
            for message, _ in load_transcript(path):
                lines.append({"from": "client", "message": message})
                lines.extend({"from": "server", "message": m} for m in play(client, message))
            assert client.wait() == 0
        finally:
            client.kill()
    path.write_text(
        "".join(
            json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines
        ),
        encoding="utf-8",
    )


# --- tests -----------------------------------------------------------------------------


def test_transcript_replays_against_the_server(spawn) -> None:
    steps = load_transcript()
    client = spawn(*SERVER_ARGS)
    recorded_ids: dict[str, str] = {}
    live_ids: dict[str, str] = {}
    for number, (message, expected) in enumerate(steps, 1):
        actual = play(client, message)
        want = mask(expected, recorded_ids)
        got = mask(actual, live_ids)
        assert got == want, (
            f"step {number} ({message.get('method')}): the server's answer differs from "
            f"examples/transcript.jsonl\nwant: {json.dumps(want)}\n got: {json.dumps(got)}"
        )
    assert client.wait(TIMEOUT) == 0


def test_transcript_covers_a_whole_session() -> None:
    steps = load_transcript()
    methods = [message["method"] for message, _ in steps]
    assert methods[0] == "initialize" and methods[-2:] == ["shutdown", "exit"]
    for method in ("newConversation", "sendUserTurn", "getConversation", "forkConversation"):
        assert method in methods
    # Every server message of the recording is real protocol output: ids match requests.
    request_ids = {message["id"] for message, _ in steps if "id" in message}
    for _, replies in steps:
        for reply in replies:
            assert reply["jsonrpc"] == "2.0"
            assert "method" in reply or reply["id"] in request_ids


def test_mask_keeps_identity_and_hides_what_varies() -> None:
    a, b = "0b6f3c2e-8d5a-4f61-9a57-3f1e2d4c5b6a", "5f2f7b99-e804-42c9-b0da-db4c9746bbe7"
    value = {
        "turnId": a,
        "again": [a, b],
        "createdAt": "2026-12-01T16:39:53.027568Z",
        "retryInMs": 103,
        "nextCursor": "MjAy",
        "serverInfo": {"name": "convmgr", "version": "9.9.9"},
        "text": "not-a-uuid",
    }
    assert mask(value, {}) == {
        "turnId": "<uuid 1>",
        "again": ["<uuid 1>", "<uuid 2>"],
        "createdAt": "<time>",
        "retryInMs": "<duration>",
        "nextCursor": "<cursor>",
        "serverInfo": {"name": "convmgr", "version": "<version>"},
        "text": "not-a-uuid",
    }


def run_python_example(name: str, tmp_path: Path) -> str:
    """Run examples/NAME with this interpreter in an empty home; its stdout (it must exit 0)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_client_example(tmp_path) -> None:
    assert run_python_example("client.py", tmp_path) == (
        "server: convmgr protocol 1\n"
        "conversation: example\n"
        "reply: Hello from the example client\n"
        "[turnComplete]\n"
        "reply: This message will not be in the fork\n"
        "[turnComplete]\n"
        "fork: example-fork of example, 2 items\n"
        "  user: Hello from the example client\n"
        "  assistant: Hello from the example client\n"
        "exit status: 0\n"
    )


def test_pipeline_example(tmp_path) -> None:
    command = f"{shlex.quote(sys.executable)} -m convmgr"
    if command != f"{sys.executable} -m convmgr":
        pytest.skip("the pipeline splits $CONVMGR on spaces; this interpreter's path has some")
    done = subprocess.run(
        ["sh", str(EXAMPLES / "pipeline.sh")],
        cwd=tmp_path,
        env=server_env(tmp_path, {"CONVMGR": command, "PYTHON": sys.executable}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from a shell pipeline\n[turnComplete]\n"


def test_pipeline_example_fails_without_a_turn(tmp_path) -> None:
    done = subprocess.run(
        ["sh", str(EXAMPLES / "pipeline.sh")],
        cwd=tmp_path,
        env=server_env(tmp_path, {"CONVMGR": "false", "PYTHON": sys.executable}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1


def readme_tools_snippet() -> str:
    """The Python block of the README's "Tools" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Tools")
    end = text.index("\n## ", start + 1)
    (snippet,) = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    return snippet


def test_tool_client_is_the_readme_example() -> None:
    assert (EXAMPLES / "tool_client.py").read_text(encoding="utf-8") == readme_tools_snippet(), (
        "examples/tool_client.py and the README's Tools example differ: copy one onto the other"
    )


def test_tool_client_example(tmp_path) -> None:
    assert run_python_example("tool_client.py", tmp_path).splitlines() == [
        "turnStarted {}",
        'toolCall {"callId": "call_1_1", "name": "clock", "arguments": {}, "source": "client"}',
        'toolResult {"callId": "call_1_1", "content": [{"type": "text", "text": "12:00"}], '
        '"isError": false}',
        'agentMessageDelta {"delta": "12:00"}',
        'agentMessage {"text": "12:00"}',
        'tokenUsage {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}',
        'turnComplete {"lastAgentMessage": "12:00", "finishReason": "stop"}',
    ]


# --- the reference page names everything the wire models define -------------------------------


def _literal_types(union: Any) -> set[str]:
    """The `type` literals of a discriminated union of wire models."""
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in members}


def test_protocol_doc_names_every_method_event_item_and_code() -> None:
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    for method in METHODS:
        assert f"`{method}`" in doc, f"docs/protocol.md does not describe {method}"
    for kind in _literal_types(events.Event) | _literal_types(items.HistoryItem):
        assert f"`{kind}`" in doc, f"docs/protocol.md does not describe {kind}"
    for code in [*ErrorCode, *ConvmgrCode]:
        assert f"| {int(code)} |" in doc, f"docs/protocol.md's error table lacks {int(code)}"
    for method in [*SERVER_REQUESTS, *NOTIFICATIONS]:
        assert f"**`{method}`**" in doc or f"`{method}" in doc, (
            f"docs/protocol.md does not describe {method}"
        )
    for name in SERVER_REQUESTS:
        assert f"**`{name}`**" in doc, f"docs/protocol.md has no paragraph on {name}"


def test_protocol_doc_names_every_capability_and_tools_setting() -> None:
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    for field in ServerCapabilities.model_fields.values():
        assert f"| `{field.alias}`" in doc, f"the capabilities table lacks {field.alias}"
    assert "`capabilities.approvals`" in doc
    for key in McpServerConfig.model_fields:
        assert f"| `{key}` |" in doc, f"the [mcp_servers.NAME] table lacks {key}"
    assert "| `max_tool_rounds` |" in doc and "max_tool_rounds" in ConfigFile.model_fields
    assert "`--tool-timeout`" in doc


def doc_part(first: int, end: int | None = None) -> str:
    """The page from section `first` up to section `end` (to its end without one)."""
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    start = doc.index(f"\n## {first}. ")
    return doc[start : doc.index(f"\n## {end}. ") if end is not None else None]


def convmgr_part() -> str:
    """The sections on convmgr's own protocol (1 to 14), before the other front ends."""
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    return doc[: doc.index(f"\n## {ACP_SECTION}. ")]


def doc_messages(doc: str | None = None) -> list[Any]:
    """Every whole JSON message the page (or `doc`) shows: one-line examples, transcripts."""
    if doc is None:
        doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", doc, re.S):
        for line in block.splitlines():
            line = re.sub(r"^(client|server) → ", "", line.strip())
            if line.startswith(("{", "[")):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue  # part of a message indented for reading
    return found


def test_protocol_doc_messages_have_todays_shapes() -> None:
    """Captured once, kept current: what the server changed since shows up here."""
    messages = []
    for value in doc_messages(convmgr_part()):
        messages += value if isinstance(value, list) else [value]
    messages = [m for m in messages if isinstance(m, dict)]  # a batch may hold anything
    assert len(messages) > 100
    for message in messages:
        error = message.get("error")
        if isinstance(error, dict) and error.get("code") == ErrorCode.INVALID_PARAMS:
            assert "errors" in error.get("data", {}), f"-32602 without data.errors: {message}"
        if isinstance(error, dict) and error.get("message") == "message too large":
            assert set(error["data"]) == {"limit", "size"}, message
        method = message.get("method")
        if method == "conversation/event":
            params = events.ConversationEventParams.model_validate(message["params"])
            if params.event.type == "turnComplete":
                assert "finishReason" in message["params"]["event"], message
        elif method in SERVER_REQUESTS and "id" in message:
            SERVER_REQUESTS[method][0].model_validate(message["params"])


def test_protocol_doc_json_examples_parse() -> None:
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", doc, re.S)
    assert blocks
    for block in blocks:
        try:
            json.loads(block)
        except ValueError:
            # One message a line, as on the wire.
            for line in filter(str.strip, block.splitlines()):
                json.loads(line)


# --- the other front ends: sections 15 (`convmgr acp`) and 16 (`convmgr mcp`) ---------------


class _MethodTable:
    """A Connection stand-in that records what a dialect's method table registers."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.notifications: list[str] = []

    def method(self, name: str, handler: Any) -> None:
        self.methods.append(name)

    def notification(self, name: str, handler: Any) -> None:
        self.notifications.append(name)

    def map_errors(self, mapper: Any) -> None:
        pass


def _module_tree(module: Any) -> ast.Module:
    return ast.parse(Path(module.__file__).read_text(encoding="utf-8"))


def sent_methods(*modules: Any) -> set[str]:
    """What the modules send: `request(...)`/`_request(...)` methods, `"method"` of messages."""
    found: set[str] = set()
    for module in modules:
        for node in ast.walk(_module_tree(module)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("request", "_request")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found | dict_values(*modules, key="method")


def dict_values(*modules: Any, key: str) -> set[str]:
    """The constant values the modules' dict literals give `key`."""
    return {
        value.value
        for module in modules
        for node in ast.walk(_module_tree(module))
        if isinstance(node, ast.Dict)
        for k, value in zip(node.keys, node.values, strict=True)
        if isinstance(k, ast.Constant) and k.value == key and isinstance(value, ast.Constant)
    }


def string_arguments(module: Any, function: str) -> set[str]:
    """The string constants `function(...)` is called with first in the module."""
    return {
        node.args[0].value
        for node in ast.walk(_module_tree(module))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == function
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def _missing(part: str, names: Any) -> list[str]:
    return sorted(str(name) for name in set(names) if f"`{name}`" not in part)


def test_protocol_doc_names_every_acp_method_update_tool_and_code() -> None:
    from convmgr.core import events as core
    from convmgr.dialects.acp import client, handlers, notifications, translate
    from convmgr.dialects.acp.front import AcpFront

    part = doc_part(ACP_SECTION, MCP_SECTION)
    table = _MethodTable()
    server = handlers.Server(table, None, None, None, None)  # type: ignore[arg-type]
    assert len(table.methods) >= 10
    assert not _missing(part, [*table.methods, *table.notifications]), "methods"
    for name in table.methods:
        if name != "initialize":
            assert f"| [`{name}`]" in part, f"the session methods table lacks {name}"
    sent = sent_methods(client, notifications) | {AcpFront.cancel_form[0]}
    assert not _missing(part, sent), "requests and notifications convmgr sends"
    answer = server.initialize({"protocolVersion": 1})
    capabilities = answer["agentCapabilities"]
    assert not _missing(part, [*answer, *capabilities, *capabilities["sessionCapabilities"]])
    # Update kinds: the chunks and the dict literals the dialect builds.
    kinds = string_arguments(translate, "_chunk")
    kinds |= dict_values(translate, notifications, key="sessionUpdate")
    assert {"agent_message_chunk", "tool_call", "tool_call_update"} <= kinds
    assert not _missing(part, kinds), "session/update kinds"
    # Stop reasons, from every way a turn ends.
    finish = typing.get_args(events.TurnComplete.model_fields["finish_reason"].annotation)
    ends: list[Any] = [core.TurnComplete("", reason) for reason in finish]
    ends += [core.TurnAborted("interrupted"), core.TurnFailed("", "tool_rounds")]
    reasons = {translate.stop_reason(end) for end in ends}
    assert translate.stop_reason(core.TurnFailed("", "http_401")) is None
    assert not _missing(part, reasons), "stop reasons"
    for tool in translate.editor_tools(True, True, True):
        assert not _missing(part, [tool["name"], *tool["inputSchema"]["properties"]]), tool["name"]
    assert not _missing(part, [option["optionId"] for option in client.PERMISSION_OPTIONS])
    for code, reason in handlers._REASONS.values():
        assert f"| {int(code)} |" in part and f"`{reason}`" in part, reason
    assert f"| {handlers.RESOURCE_NOT_FOUND} |" in part


def test_protocol_doc_names_every_mcp_method_tool_and_code() -> None:
    from convmgr.dialects.mcp import client, server, tools, turns, wire

    part = doc_part(MCP_SECTION, MCP_SECTION + 1)
    table = _MethodTable()
    server.McpServer(table, None, None, None, None)  # type: ignore[arg-type]
    assert "tools/call" in table.methods
    assert not _missing(part, [*table.methods, *table.notifications]), "methods"
    assert not _missing(part, sent_methods(client, turns)), "requests and notifications sent"
    for tool in tools.TOOLS:
        assert not _missing(part, [tool["name"], *tool["inputSchema"]["properties"]]), tool["name"]
        for field in tool["outputSchema"]["anyOf"][0]["required"]:
            assert re.search(rf"`[^`]*\b{field}\b[^`]*`", part), f"{tool['name']}: {field}"
        assert f"| `{tool['name']}` |" in part, f"the tools table lacks {tool['name']}"
    codes = set(server._CODES.values()) | string_arguments(server, "failure")
    assert {"not_found", "busy", "turn_failed", "aborted"} <= codes
    for code in codes:
        assert f"| `{code}` |" in part, f"the tool errors table lacks {code}"
    assert all(version in part for version in wire.HANDSHAKE_PROTOCOL_VERSIONS)
    assert f"`{server.SCHEME}ID`" in part and server.RESOURCE_TEMPLATE["uriTemplate"] in part


def transcript_blocks(part: str) -> list[list[tuple[str, str]]]:
    """Each code block's `client → ` / `server → ` lines that are whole JSON messages."""
    blocks = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", part, re.S):
        lines = []
        for line in block.splitlines():
            match = re.match(r"(client|server) → (\{.*\})$", line)
            if match:
                json.loads(match.group(2))
                lines.append((match.group(1), match.group(2)))
        if lines:
            blocks.append(lines)
    return blocks


def test_protocol_doc_acp_messages_fit_the_acp_schema() -> None:
    from acp_harness import REQUESTS, RESULTS, check_error, strict

    from convmgr.dialects.acp.front import AcpFront

    checked = 0
    for block in transcript_blocks(doc_part(ACP_SECTION, MCP_SECTION)):
        asked: dict[Any, str] = {}
        for direction, line in block:
            message = json.loads(line)
            if direction == "client":
                if "method" in message and "id" in message:
                    asked[message["id"]] = message["method"]
                continue
            where = f"docs/protocol.md: {line[:120]}"
            assert message.get("jsonrpc") == "2.0", where
            method = message.get("method")
            if method is None:
                if "error" in message:
                    check_error(message["error"], where)
                else:
                    strict(RESULTS[asked[message["id"]]], message["result"], where)
            elif method == "session/update":
                strict(acp_schema().SessionNotification, message["params"], where)
            elif method == AcpFront.cancel_form[0]:
                assert message["params"].keys() == {AcpFront.cancel_form[1]}, where
            else:
                strict(REQUESTS[method], message["params"], where)
            checked += 1
    assert checked > 100


def acp_schema() -> Any:
    from acp import schema

    return schema


def test_protocol_doc_mcp_messages_fit_the_mcp_types() -> None:
    from mcp_wire_check import WireLog

    checked = 0
    for block in transcript_blocks(doc_part(MCP_SECTION, MCP_SECTION + 1)):
        log = WireLog()
        for direction, line in block:
            log.add("<" if direction == "client" else ">", line)
        checked += len(log.server_messages())
    assert checked > 40


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_examples.py --record")
    record()
    print(f"recorded {TRANSCRIPT.relative_to(ROOT)}; review it with git diff")
