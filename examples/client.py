"""A minimal convmgr client: standard library only, newline-delimited JSON over pipes.

Runs `python -m convmgr serve --no-store` (or the command given as arguments),
has a conversation with the built-in echo model, forks it and reads the fork's
history. docs/protocol.md explains every message.

    python examples/client.py
    python examples/client.py convmgr serve --no-store
"""

import itertools
import json
import subprocess
import sys

TERMINAL = {"turnComplete", "turnAborted", "turnFailed"}
command = sys.argv[1:] or [sys.executable, "-m", "convmgr", "serve", "--no-store"]
server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
ids = itertools.count(1)
last_seq: dict[str, int] = {}  # per conversation: seq must grow by exactly 1


def send(message: dict) -> None:
    server.stdin.write(json.dumps(message) + "\n")
    server.stdin.flush()


def receive() -> dict:
    message = json.loads(server.stdout.readline())
    if message.get("method") == "conversation/event":
        params = message["params"]
        cid = params["conversationId"]
        assert params["seq"] == last_seq.get(cid, 0) + 1, "a notification was lost"
        last_seq[cid] = params["seq"]
    return message


def request(method: str, params: dict | None = None) -> dict:
    """Send a request and read until its response; events read meanwhile are skipped."""
    request_id = next(ids)
    send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})
    while True:
        message = receive()
        if message.get("id") == request_id and "method" not in message:
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return message["result"]


def turn(conversation_id: str, text: str) -> str:
    """Send a user turn, print its deltas as they come; the terminal event's type."""
    turn_id = request(
        "sendUserTurn",
        {"conversationId": conversation_id, "input": [{"type": "text", "text": text}]},
    )["turnId"]
    print("reply: ", end="")
    while True:  # this turn's events all follow the sendUserTurn response
        params = receive()["params"]
        event = params["event"]
        if params["turnId"] == turn_id and event["type"] == "agentMessageDelta":
            print(event["delta"], end="", flush=True)
        if params["turnId"] == turn_id and event["type"] in TERMINAL:
            print(f"\n[{event['type']}]")
            return event["type"]


info = request("initialize", {"clientInfo": {"name": "example-client", "version": "1.0"}})
send({"jsonrpc": "2.0", "method": "initialized"})
print("server:", info["serverInfo"]["name"], "protocol", info["protocolVersion"])
conversation = request("newConversation", {"conversationId": "example", "provider": "echo"})
print("conversation:", conversation["conversationId"])
turn("example", "Hello from the example client")
turn("example", "This message will not be in the fork")
fork = request(
    "forkConversation",
    {
        "conversationId": "example",
        "dropLastMessages": 1,
        "overrides": {"conversationId": "example-fork"},
    },
)["sessionConfigured"]
print(f"fork: {fork['conversationId']} of {fork['forkedFrom']}, {fork['historyLength']} items")
page = request("getConversation", {"conversationId": "example-fork", "includeHistory": True})
for item in page["history"]:
    if item["type"] == "message":
        print(f"  {item['role']}: {' '.join(part['text'] for part in item['content'])}")
request("shutdown")
send({"jsonrpc": "2.0", "method": "exit"})
print("exit status:", server.wait())
