// An editor-style client nobody here wrote: vscode-jsonrpc (the library VS Code's
// language clients use) drives `python -m convmgr --no-store` over Content-Length
// frames and runs convmgr's client tools (PROTOCOL section 9).
//
//   node tests/node/tool_client.mjs PYTHON      (or CONVMGR_PYTHON=... node ...)
//
// It answers `tool/call` requests with MCP CallToolResults, listens to
// `conversation/event`, runs one call, three parallel calls answered last to
// first, and a call it holds while the turn is interrupted: vscode-jsonrpc's
// CancellationToken given to the request handler must fire (convmgr sends
// `$/cancelRequest`), and the answer the handler then sends is a late one the
// server ignores. Prints one JSON summary line on stdout; tests/test_tools_node.py
// asserts on it. Exit status 0 when the script ran to the end (the summary says
// what happened), 1 when it failed or timed out.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
// vscode-jsonrpc is installed in .ci/node (npm ci --prefix .ci/node); its path is argv[3].
const rpc = createRequire(`${process.argv[3]}/`)('vscode-jsonrpc/node.js');

const { createMessageConnection, StreamMessageReader, StreamMessageWriter } = rpc;

const python = process.argv[2] || process.env.CONVMGR_PYTHON || 'python3';
const TIMEOUT_MS = Number(process.env.TOOL_CLIENT_TIMEOUT_MS || 30000);

const child = spawn(python, ['-m', 'convmgr', '--no-store'], {
  stdio: ['pipe', 'pipe', 'pipe'],
});
let stderr = '';
child.stderr.setEncoding('utf8');
child.stderr.on('data', (chunk) => {
  stderr += chunk;
});
const exited = new Promise((resolve) => {
  child.on('exit', (code, signal) => resolve({ code, signal }));
});

const connection = createMessageConnection(
  new StreamMessageReader(child.stdout),
  new StreamMessageWriter(child.stdin),
);

function finish(summary, status) {
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(status));
}

const guard = setTimeout(() => {
  child.kill('SIGKILL');
  finish({ ok: false, error: `timed out after ${TIMEOUT_MS} ms`, stderr: stderr.slice(-2000) }, 1);
}, TIMEOUT_MS);

// --- events --------------------------------------------------------------------

const events = new Map(); // conversationId -> event params, in order
const cursors = new Map(); // conversationId -> index of the next event not yet waited for
const waiters = [];
const seqErrors = [];

function tryWaiter(waiter) {
  const list = events.get(waiter.cid) || [];
  for (let i = cursors.get(waiter.cid) || 0; i < list.length; i++) {
    if (list[i].event.type === waiter.type) {
      cursors.set(waiter.cid, i + 1);
      waiter.resolve(list[i]);
      return true;
    }
  }
  return false;
}

connection.onNotification('conversation/event', (params) => {
  const list = events.get(params.conversationId) || [];
  const last = list[list.length - 1];
  if (last && params.seq !== last.seq + 1) {
    seqErrors.push([params.conversationId, last.seq, params.seq]);
  }
  list.push(params);
  events.set(params.conversationId, list);
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (tryWaiter(waiters[i])) waiters.splice(i, 1);
  }
});

/** The conversation's next event of this type after the last one waited for. */
function nextEvent(cid, type) {
  return new Promise((resolve) => {
    const waiter = { cid, type, resolve };
    if (!tryWaiter(waiter)) waiters.push(waiter);
  });
}

/** The events of a conversation's turn, by turnId. */
function turnEvents(cid, turnId) {
  return (events.get(cid) || []).filter((p) => p.turnId === turnId).map((p) => p.event);
}

// --- tools ---------------------------------------------------------------------

const text = (t, isError = false) => ({ content: [{ type: 'text', text: t }], isError });
const toolCalls = []; // tool/call params, in the order they came
const answeredOrder = []; // callIds of the parallel calls, in the order answered
const slow = []; // parallel calls held until all three came
let holdArrived;
const held = new Promise((resolve) => {
  holdArrived = resolve;
});
let cancelFired;
const cancelled = new Promise((resolve) => {
  cancelFired = resolve;
});

connection.onRequest('tool/call', (params, token) => {
  toolCalls.push(params);
  const { name, arguments: args, callId } = params;
  if (name === 'lookup') {
    return text(`value of ${args.key}`);
  }
  if (name === 'slow') {
    return new Promise((resolve) => {
      slow.push({ callId, key: args.key, resolve });
      if (slow.length === 3) {
        // All three are pending at once: answer them last to first, once this
        // handler has returned (so each answer is sent in the order resolved).
        setImmediate(() => {
          for (const call of [...slow].reverse()) {
            answeredOrder.push(call.callId);
            call.resolve(text(`slow ${call.key}`));
          }
        });
      }
    });
  }
  if (name === 'hold') {
    return new Promise((resolve) => {
      token.onCancellationRequested(() => {
        cancelFired({ callId, isCancellationRequested: token.isCancellationRequested });
        // vscode-jsonrpc answers whatever the handler returns: a late answer.
        resolve(text('late answer after the cancel'));
      });
      holdArrived(callId);
    });
  }
  return text(`unknown tool ${name}`, true);
});

// --- the session ---------------------------------------------------------------

const TOOLS = ['lookup', 'slow', 'hold'].map((name) => ({
  name,
  description: `the ${name} tool`,
  inputSchema: { type: 'object', properties: { key: { type: 'string' } } },
}));

async function turn(cid, input) {
  const { turnId } = await connection.sendRequest('sendUserTurn', {
    conversationId: cid,
    input: [{ type: 'text', text: input }],
  });
  return turnId;
}

async function terminal(cid) {
  return Promise.race(
    ['turnComplete', 'turnAborted', 'turnFailed'].map((type) => nextEvent(cid, type)),
  );
}

async function main() {
  connection.listen();
  const summary = { ok: false };
  const init = await connection.sendRequest('initialize', {
    clientInfo: { name: 'vscode-jsonrpc-tool-client', version: '1' },
    capabilities: {},
  });
  summary.initialize = {
    server: init.serverInfo.name,
    tools: init.capabilities.tools,
    serverRequests: init.capabilities.serverRequests,
  };
  const created = await connection.sendRequest('newConversation', {
    conversationId: 'editor',
    tools: TOOLS,
  });
  summary.configuredTools = created.sessionConfigured.tools.map((t) => t.name);

  // One call.
  let turnId = await turn('editor', '/call lookup {"key": "k0"}');
  let end = await terminal('editor');
  summary.one = {
    terminal: end.event,
    kinds: turnEvents('editor', turnId).map((e) => e.type),
  };

  // Three calls at once, answered last to first.
  turnId = await turn(
    'editor',
    ['k1', 'k2', 'k3'].map((k) => `/call slow {"key": "${k}"}`).join('\n'),
  );
  end = await terminal('editor');
  summary.parallel = {
    terminal: end.event,
    answeredOrder,
    resultOrder: turnEvents('editor', turnId)
      .filter((e) => e.type === 'toolResult')
      .map((e) => e.callId),
  };

  // A call the client holds while the turn is interrupted.
  turnId = await turn('editor', '/call hold {}');
  const heldCallId = await held;
  const interrupt = await connection.sendRequest('interruptConversation', {
    conversationId: 'editor',
  });
  const fired = await cancelled;
  end = await terminal('editor');
  summary.cancel = {
    heldCallId,
    interrupt,
    tokenFired: fired,
    terminal: end.event,
    toolResults: turnEvents('editor', turnId).filter((e) => e.type === 'toolResult'),
  };

  // The server keeps serving after the late answer.
  summary.pingAfter = await connection.sendRequest('ping');
  turnId = await turn('editor', '/call lookup {"key": "after"}');
  end = await terminal('editor');
  summary.after = { terminal: end.event };

  const got = await connection.sendRequest('getConversation', {
    conversationId: 'editor',
    includeHistory: true,
  });
  summary.history = got.history.map((item) =>
    item.type === 'functionCallOutput'
      ? [item.type, item.callId, item.output, item.isError]
      : item.type === 'functionCall'
        ? [item.type, item.callId, item.name]
        : [item.type, item.role],
  );
  summary.toolCalls = toolCalls.map((p) => [p.callId, p.name, p.conversationId]);
  summary.seqErrors = seqErrors;

  child.stdin.end();
  summary.exit = await exited;
  connection.dispose();
  summary.lateAnswerLogged = stderr.includes('ignoring an answer to request id');
  summary.stderr = stderr.slice(-2000);
  summary.ok = true;
  return summary;
}

main().then(
  (summary) => {
    clearTimeout(guard);
    finish(summary, 0);
  },
  (error) => {
    clearTimeout(guard);
    child.kill('SIGKILL');
    finish({ ok: false, error: String(error && error.stack ? error.stack : error), stderr: stderr.slice(-2000) }, 1);
  },
);
