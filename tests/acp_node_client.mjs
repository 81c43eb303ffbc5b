// An ACP client on the official Node SDK (@agentclientprotocol/sdk 1.9.0, from .ci/node):
// spawns `convmgr acp`, runs a session through ClientSideConnection over ndJsonStream and
// prints what it saw as one JSON object. Run by tests/test_acp_node.py.
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { writeFileSync } from "node:fs";

const [sdkPath, python, store, cwd] = process.argv.slice(2);
const acp = await import(pathToFileURL(`${sdkPath}/dist/acp.js`).href);

const child = spawn(python, ["-m", "convmgr", "acp", "--store", store], {
  stdio: ["pipe", "pipe", "inherit"],
});
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

const chunks = {};
const statuses = [];
const writes = [];
let permissions = 0;
const client = {
  async sessionUpdate({ sessionId, update }) {
    if (update.sessionUpdate === "agent_message_chunk") {
      chunks[sessionId] = (chunks[sessionId] ?? "") + update.content.text;
    } else if (update.sessionUpdate.startsWith("tool_call")) {
      statuses.push(update.status);
    }
  },
  async requestPermission() {
    permissions += 1;
    return { outcome: { outcome: "selected", optionId: "allow_once" } };
  },
  async writeTextFile({ path, content }) {
    writes.push(path);
    writeFileSync(path, content);
    return {};
  },
  async readTextFile() {
    return { content: "" };
  },
};
const conn = new acp.ClientSideConnection(() => client, stream);

const init = await conn.initialize({
  protocolVersion: acp.PROTOCOL_VERSION,
  clientCapabilities: { fs: { readTextFile: true, writeTextFile: true }, terminal: false },
});
const { sessionId } = await conn.newSession({ cwd, mcpServers: [] });
const text = "hello from node, word by word";
const first = await conn.prompt({ sessionId, prompt: [{ type: "text", text }] });
const call = JSON.stringify({ path: "from-node.txt", content: "written" });
const second = await conn.prompt({
  sessionId,
  prompt: [{ type: "text", text: `/call write_file ${call}` }],
});
const fork = await conn.unstable_forkSession({ sessionId, cwd, mcpServers: [] });
const listed = await conn.listSessions({ cwd });
await conn.closeSession({ sessionId: fork.sessionId });
await conn.deleteSession({ sessionId: fork.sessionId });
const after = await conn.listSessions({ cwd });
let unknown = null;
try {
  await conn.prompt({ sessionId: "no-such-session", prompt: [{ type: "text", text: "x" }] });
} catch (error) {
  unknown = error.code;
}
child.stdin.end();
await new Promise((resolve) => child.on("exit", resolve));
console.log(
  JSON.stringify({
    protocolVersion: init.protocolVersion,
    loadSession: init.agentCapabilities.loadSession,
    sessionId,
    stopReasons: [first.stopReason, second.stopReason],
    reply: chunks[sessionId],
    text,
    statuses,
    permissions,
    writes,
    listed: listed.sessions.map((s) => s.sessionId).sort(),
    forkId: fork.sessionId,
    after: after.sessions.map((s) => s.sessionId),
    unknown,
  }),
);
