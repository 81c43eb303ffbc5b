"""The `convmgr` command line: serve (default), schema, export, import, --version."""

import argparse
import gc
import logging
import os
import sys
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
        type=Path,
        metavar="PATH",
        help="SQLite file of stored conversations "
        "(default: conversations.sqlite3 in $CONVMGR_HOME or the user data directory)",
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
  0  a clean end: end of input, the exit notification, SIGTERM or SIGINT
  1  export/import could not do what was asked
  2  bad flags, or a store, configuration or log file that cannot be used

examples:
  printf '%s\\n' \\
    '{"id":1,"method":"newConversation","params":{"conversationId":"d"}}' \\
    '{"id":2,"method":"sendUserTurn","params":{"conversationId":"d",'\\
'"input":[{"type":"text","text":"hi"}]}}' \\
    | convmgr --no-store
  convmgr --config ~/.config/convmgr/openai.toml --log-level info
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
    for target in (parser, serve, acp):
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
        target.add_argument(
            "--log-level",
            default="warning",
            choices=("debug", "info", "warning", "error"),
            help="stderr log level (default: warning)",
        )
        target.add_argument("--log-file", type=Path, metavar="PATH", help="log here, not stderr")

    schema = commands.add_parser("schema", help="write the protocol's JSON Schemas")
    schema.add_argument("--out", type=Path, required=True, metavar="DIR")

    export = commands.add_parser("export", help="print a stored conversation as JSON lines")
    export.add_argument("conversation_id", metavar="ID")
    _add_store_flags(export)

    imp = commands.add_parser("import", help="load a conversation from JSON lines")
    imp.add_argument("file", type=Path, metavar="FILE", help="a file, or - for stdin")
    _add_store_flags(imp)
    return parser


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


def _setup_logging(level: str, log_file: Path | None) -> None:
    handler: logging.Handler
    if log_file is not None:
        handler = logging.StreamHandler(_open_log_file(log_file))
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("convmgr %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if command in ("serve", "acp"):
        _setup_logging(args.log_level, args.log_file)
        # Start-up allocates many long-lived objects: collecting during the
        # imports only costs time, and freezing them keeps later collections short.
        gc.disable()
        from convmgr.app import serve_stdio

        gc.freeze()
        gc.enable()
        return serve_stdio(args)
    _setup_logging("warning", None)
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
