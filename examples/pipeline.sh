#!/bin/sh
# convmgr from a shell: newline-delimited requests piped in, the reply filtered out.
#
# Both requests name the conversation, so the turn may follow its creation
# without waiting for an answer (docs/protocol.md, section 3). At end of input
# convmgr answers everything it read, lets the turn finish and exits 0.
# The filter prints the reply as it streams, then how the turn ended; an
# error response, or no end of turn at all, makes the pipeline fail.
#
#   sh examples/pipeline.sh
#   CONVMGR="python -m convmgr" sh examples/pipeline.sh
set -eu
CONVMGR=${CONVMGR:-convmgr}
PYTHON=${PYTHON:-python3}

printf '%s\n' \
  '{"jsonrpc":"2.0","id":1,"method":"newConversation","params":{"conversationId":"pipe"}}' \
  '{"jsonrpc":"2.0","id":2,"method":"sendUserTurn","params":{"conversationId":"pipe","input":[{"type":"text","text":"Hello from a shell pipeline"}]}}' \
| $CONVMGR --no-store \
| $PYTHON -c '
import json, sys
failed, ended = False, False
for line in sys.stdin:
    msg = json.loads(line)
    if "error" in msg:
        print("error:", json.dumps(msg["error"]), file=sys.stderr)
        failed = True
    elif msg.get("method") == "conversation/event":
        event = msg["params"]["event"]
        if event["type"] == "agentMessageDelta":
            print(event["delta"], end="", flush=True)
        elif event["type"] in ("turnComplete", "turnAborted", "turnFailed"):
            print()
            print("[" + event["type"] + "]")
            ended = True
sys.exit(0 if ended and not failed else 1)
'
