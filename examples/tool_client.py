import json, subprocess, sys

server = subprocess.Popen([sys.executable, "-m", "convmgr", "--no-store"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def send(msg):
    server.stdin.write(json.dumps({"jsonrpc": "2.0", **msg}) + "\n"); server.stdin.flush()

clock = {"name": "clock", "description": "The time now.", "inputSchema": {"type": "object"}}
send({"id": 1, "method": "newConversation", "params": {"conversationId": "demo", "tools": [clock]}})
send({"id": 2, "method": "sendUserTurn",
      "params": {"conversationId": "demo", "input": [{"type": "text", "text": "/call clock {}"}]}})
for line in server.stdout:
    msg = json.loads(line)
    if msg.get("method") == "tool/call":  # the model called our tool: run it, answer
        send({"id": msg["id"], "result": {"content": [{"type": "text", "text": "12:00"}]}})
    elif msg.get("method") == "conversation/event":
        event = msg["params"]["event"]
        print(event["type"], json.dumps({k: v for k, v in event.items() if k != "type"}))
        if event["type"] in ("turnComplete", "turnAborted", "turnFailed"):
            break
server.stdin.close(); server.wait()
