"""The `convmgr` command line: serve (default), mcp, exec, doctor, schema, export, import."""

import argparse
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TextIO

from convmgr import __version__

log = logging.getLogger("convmgr")


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"convmgr: {message} (see convmgr --help)\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0: {text}")
    return value


def _add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH|URL",
        help="SQLite file of stored conversations, or a postgresql://user@host/db URL "
        "(default: $CONVMGR_STORE, else [store] url, else conversations.sqlite3 in "
        "$CONVMGR_HOME or the user data directory)",
    )


def _add_log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="stderr log level (default: warning)",
    )
    parser.add_argument("--log-file", type=Path, metavar="PATH", help="log here, not stderr")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines, or one JSON object a line (default: text)",
    )
    parser.add_argument(
        "--log-content",
        action="store_true",
        help="debug lines may show prompts, replies and tool arguments (default: sizes only)",
    )
    parser.add_argument(
        "--log-libraries",
        action="store_true",
        help="also the libraries' own lines below warning (httpx, httpcore, pylsp_jsonrpc, "
        "mcp, asyncio); they quote whole messages, so this needs --log-content",
    )


_EPILOG = """\
environment:
  CONVMGR_CONFIG   provider configuration file, when --config is not given
  CONVMGR_HOME     directory of the default store (conversations.sqlite3)
  API keys         read from the variable each provider's api_key_env names

files:
  config.toml            in the user config directory (~/.config/convmgr/ on Linux)
  conversations.sqlite3  in $CONVMGR_HOME, else the user data directory

exit status:
  0  a clean end: end of input, the exit notification, SIGTERM or SIGINT;
     exec: the turn completed; doctor: all is fine
  1  export/import could not do what was asked; exec: the turn failed or was
     aborted; doctor: a --check failed
  2  bad flags, or a store, configuration or log file that cannot be used
  130  exec: interrupted by SIGINT (Ctrl-C)

examples:
  printf '%s\\n' \\
    '{"id":1,"method":"newConversation","params":{"conversationId":"d"}}' \\
    '{"id":2,"method":"sendUserTurn","params":{"conversationId":"d",'\\
'"input":[{"type":"text","text":"hi"}]}}' \\
    | convmgr --no-store
  convmgr --config ~/.config/convmgr/openai.toml --log-level info --log-format json
  convmgr exec --provider openai "Summarise README.md in one line"
  git diff | convmgr exec --resume ID --json -
  convmgr doctor --check
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="convmgr",
        description="A conversation manager for LLM agents: JSON-RPC 2.0 over stdio.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convmgr {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the stdio JSON-RPC server (the default)")
    acp = commands.add_parser(
        "acp",
        help="speak the Agent Client Protocol on stdio (editors: Zed, JetBrains, Neovim, Emacs)",
        description="The Agent Client Protocol (version 1, newline-delimited JSON-RPC) on "
        "stdin/stdout, over the same store, providers and tools as `convmgr serve`.",
    )
    # ACP is newline-delimited JSON only; every other flag is serve's.
    acp.set_defaults(framing="ndjson")
    mcp = commands.add_parser(
        "mcp",
        help="run an MCP server on stdio: conversations as MCP tools and resources",
        description="Serve conversations to MCP hosts (Claude Desktop, VS Code, Cursor, "
        "the MCP Inspector) as six tools and conversation:// resources, over the same "
        "store, providers and MCP tool sources as `convmgr serve`.",
        epilog=_MCP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for target in (parser, serve, acp, mcp):
        if target is not acp:
            target.add_argument(
                "--framing",
                choices=("auto", "ndjson", "lsp"),
                default="auto",
                help="message framing on stdin/stdout (default: auto, from the first byte)",
            )
        target.add_argument(
            "--config", type=Path, metavar="PATH", help="provider configuration (TOML)"
        )
        _add_store_flags(target)
        target.add_argument(
            "--no-store", action="store_true", help="keep conversations in memory only"
        )
        target.add_argument(
            "--max-message-bytes",
            type=_positive_int,
            default=16 << 20,
            metavar="N",
            help="largest accepted message (default: 16 MiB)",
        )
        target.add_argument(
            "--drain-timeout",
            type=_seconds,
            default=60.0,
            metavar="SECONDS",
            help="at end of input, how long running turns may take to finish (default: 60)",
        )
        target.add_argument(
            "--tool-timeout",
            type=_seconds,
            default=600.0,
            metavar="SECONDS",
            help="how long the client may take to answer a tool/call (default: 600)",
        )
        target.add_argument(
            "--max-conversations",
            type=_positive_int,
            metavar="N",
            help="most conversations loaded at once (default: no limit)",
        )
        _add_log_flags(target)

    schema = commands.add_parser("schema", help="write the protocol's JSON Schemas")
    schema.add_argument("--out", type=Path, required=True, metavar="DIR")

    export = commands.add_parser("export", help="print a stored conversation as JSON lines")
    export.add_argument("conversation_id", metavar="ID")
    _add_store_flags(export)

    imp = commands.add_parser("import", help="load a conversation from JSON lines")
    imp.add_argument("file", type=Path, metavar="FILE", help="a file, or - for stdin")
    _add_store_flags(imp)

    _add_exec_parser(commands)

    doctor = commands.add_parser(
        "doctor",
        help="show the configuration, store and providers in effect; --check asks the providers",
        description="Show the configuration file, the store, the providers and MCP servers "
        "in effect, and whether each provider's key variable is set (never its value).",
        epilog=_DOCTOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--config", type=Path, metavar="PATH", help="provider configuration (TOML)")
    _add_store_flags(doctor)
    doctor.add_argument(
        "--check",
        action="store_true",
        help="ask each HTTP provider for GET {base_url}/models (5 s timeout)",
    )
    return parser


_MCP_EPILOG = """\
An MCP host spawns it, e.g. in claude_desktop_config.json:
  {"mcpServers": {"convmgr": {"command": "convmgr", "args": ["mcp"]}}}

tools: conversation_start, conversation_reply, conversation_fork,
conversation_get, conversation_list, conversation_remove
resources: conversation://ID (a stored conversation's history, as JSON)

examples:
  convmgr mcp --config ~/.config/convmgr/openai.toml
  npx @modelcontextprotocol/inspector-cli --cli convmgr mcp --method tools/list
"""

_EXEC_EPILOG = """\
The reply streams to stdout as plain text (with --json: one JSON object a line,
the params of each conversation/event notification). The conversation's id goes
to stderr as `conversation: ID`; `--resume ID` continues it later. Tools the
client would run cannot be answered here: calls to them fail, and MCP servers
with approval = "ask" are denied.

exit status:
  0    the turn completed (turnComplete)
  1    the turn failed or was aborted (the error on stderr), or the store failed
  2    bad usage: flags, no prompt, an unknown provider or --resume id, a
       configuration or store that cannot be used
  130  interrupted by SIGINT (Ctrl-C)

examples:
  convmgr exec "Say hello"
  echo "Say hello" | convmgr exec --no-store
  convmgr exec --resume ID "And now in French"
  convmgr exec --json --provider openai --model gpt-4.1-mini "Hi" | jq .event.type
"""

_DOCTOR_EPILOG = """\
exit status:
  0  all is fine
  1  a --check failed (no answer, or an answer that is not 2xx)
  2  bad flags, or a configuration or store that cannot be used

examples:
  convmgr doctor
  convmgr doctor --config ~/.config/convmgr/openai.toml --check
"""


def _add_exec_parser(commands: "argparse._SubParsersAction[_Parser]") -> None:
    """`convmgr exec`: one turn from the command line."""
    exe = commands.add_parser(
        "exec",
        help="run one turn and stream the reply to stdout",
        description="Run one turn on a new or stored conversation, without a JSON-RPC client.",
        epilog=_EXEC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    exe.add_argument(
        "prompt",
        nargs="?",
        metavar="PROMPT",
        help="the user message; - or none: read it from stdin (when stdin is not a terminal)",
    )
    exe.add_argument("--provider", metavar="NAME", help="the provider (default: the default one)")
    exe.add_argument("--model", metavar="MODEL", help="the model (default: the provider's)")
    which = exe.add_mutually_exclusive_group()
    which.add_argument(
        "--conversation", metavar="ID", help="the id of the new conversation (default: a UUID)"
    )
    which.add_argument("--resume", metavar="ID", help="continue this stored conversation")
    exe.add_argument(
        "--json", action="store_true", help="print every event as a JSON line, not the text"
    )
    exe.add_argument("--config", type=Path, metavar="PATH", help="provider configuration (TOML)")
    _add_store_flags(exe)
    exe.add_argument(
        "--no-store",
        action="store_true",
        help="keep the conversation in memory only (it cannot be resumed)",
    )
    _add_log_flags(exe)


def _open_log_file(path: Path) -> TextIO:
    """The log file, opened for appending; exit 2 with one line if it cannot be, or is stdout."""
    try:
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 (the handler keeps it)
    except OSError as exc:
        sys.stderr.write(f"convmgr: cannot open log file {path}: {exc.strerror or exc}\n")
        raise SystemExit(2) from None
    if _same_file(stream.fileno(), 1):
        stream.close()
        sys.stderr.write(f"convmgr: log file {path} is stdout, which carries the protocol\n")
        raise SystemExit(2)
    return stream


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _setup_logging(args: argparse.Namespace) -> None:
    """The log the flags ask for; exit 2 with one line for flags that do not go together."""
    if args.log_libraries and not args.log_content:
        sys.stderr.write(
            "convmgr: --log-libraries shows the libraries' own lines, which quote whole "
            "messages: it needs --log-content too\n"
        )
        raise SystemExit(2)
    from convmgr import logs

    logs.configure(
        args.log_level,
        stream=_open_log_file(args.log_file) if args.log_file is not None else sys.stderr,
        log_format=args.log_format,
        log_content=args.log_content,
        libraries=args.log_libraries,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command in ("serve", "acp", "mcp"):
        _setup_logging(args)
        # Start-up allocates many long-lived objects: collecting during the
        # imports only costs time, and freezing them keeps later collections short.
        gc.disable()
        run: Callable[[argparse.Namespace], int]
        if command in ("serve", "acp"):
            from convmgr.app import serve_stdio

            run = serve_stdio
        else:
            from convmgr.mcp_app import serve_mcp_stdio

            run = serve_mcp_stdio
        gc.freeze()
        gc.enable()
        return run(args)
    if command == "exec":
        _setup_logging(args)
        from convmgr.exec_cli import exec_command

        return exec_command(args)
    from convmgr import logs

    logs.configure("warning")
    if command == "doctor":
        from convmgr.doctor import doctor_command

        return doctor_command(args.config, args.store, check=args.check)
    if command == "schema":
        from convmgr.dialects.convmgr.schema import write_schemas

        try:
            written = write_schemas(args.out)
        except OSError as exc:
            sys.stderr.write(f"convmgr schema: cannot write to {args.out}: {exc.strerror or exc}\n")
            return 2
        for path in written:
            sys.stderr.write(f"wrote {path}\n")
        return 0
    from convmgr.transfer_cli import export_command, import_command

    if command == "export":
        return export_command(args.store, args.conversation_id)
    return import_command(args.store, args.file)


if __name__ == "__main__":
    sys.exit(main())
