"""The client's requests checked and read: plain shapes by hand, anything else by the schema.

`initialize`, `session/new` and `session/prompt` are the first requests of
every editor session. Their usual shapes are accepted here without pydantic,
so the first answers do not wait for the wire models (~120 ms to build, see
schema.py); any other shape, valid or not, goes through the generated models,
which accept it or say what is wrong. A property test holds these checks to
accepting nothing the official `acp.schema` rejects.
"""

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from convmgr.jsonrpc.codes import ErrorCode
from convmgr.jsonrpc.errors import RpcError
from convmgr.jsonrpc.messages import non_finite_path
from convmgr.model import McpServerSettings

if TYPE_CHECKING:
    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

# ACP protocol versions are integers (u16); convmgr speaks 1.
PROTOCOL_VERSION = 1
_MAX_VERSION = 65535

_INITIALIZE_KEYS = frozenset({"protocolVersion", "clientCapabilities", "clientInfo", "_meta"})
_CAPABILITY_KEYS = frozenset({"fs", "terminal", "_meta"})
_FS_KEYS = frozenset({"readTextFile", "writeTextFile", "_meta"})
_INFO_KEYS = frozenset({"name", "title", "version"})
_NEW_KEYS = frozenset({"cwd", "mcpServers", "_meta"})
_STDIO_KEYS = frozenset({"name", "command", "args", "env"})
_ENV_KEYS = frozenset({"name", "value"})
_PROMPT_KEYS = frozenset({"sessionId", "prompt", "_meta"})
_TEXT_KEYS = frozenset({"type", "text"})
_LINK_KEYS = frozenset({"type", "uri", "name"})
_EMBEDDED_KEYS = frozenset({"type", "resource"})
_TEXT_RESOURCE_KEYS = frozenset({"uri", "text", "mimeType"})


@dataclass(slots=True, frozen=True)
class ClientInfo:
    """What `initialize` says of the client: the version it asked for and its capabilities."""

    protocol_version: int
    read_text_file: bool = False
    write_text_file: bool = False
    terminal: bool = False


@dataclass(slots=True, frozen=True)
class NewSession:
    """`session/new`, `session/load`, `session/resume`, `session/fork` as convmgr uses them."""

    cwd: str
    mcp_servers: tuple[McpServerSettings, ...] = ()
    session_id: str | None = None


def invalid(message: str, field: str | None = None) -> RpcError:
    """-32602 with `data: {reason, errors}`."""
    loc = [field] if field else []
    errors = [{"type": "value_error", "loc": loc, "msg": message}]
    return RpcError(
        ErrorCode.INVALID_PARAMS,
        f"invalid params: {message}",
        {"reason": "invalid_params", "errors": errors},
    )


def validation_error(exc: ValidationError) -> RpcError:
    """A model's ValidationError as -32602 listing every error."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "params"
    return RpcError(
        ErrorCode.INVALID_PARAMS,
        f"invalid params: {where}: {first['msg']}",
        {"reason": "invalid_params", "errors": errors},
    )


def parse(model: "type[M]", params: Any) -> "M":
    """Validate params with a generated model (-32602 when they do not fit)."""
    if params is None:
        params = {}
    if type(params) is not dict:
        raise invalid("params must be an object")
    where = non_finite_path(params)
    if where is not None:
        raise invalid("numbers must be finite (NaN and Infinity are not JSON)")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise validation_error(exc) from None


def schema() -> Any:
    """The generated wire models (imported on first use: ~120 ms of model building)."""
    from convmgr.dialects.acp import schema as generated

    return generated


# --- initialize -----------------------------------------------------------------------


def _plain_flag(value: Any) -> bool:
    return value is None or type(value) is bool


def plain_initialize(params: Any) -> bool:
    """Whether `initialize` params have the usual shape and are plainly valid."""
    if type(params) is not dict or not params.keys() <= _INITIALIZE_KEYS:
        return False
    version = params.get("protocolVersion")
    if type(version) is not int or not 0 <= version <= _MAX_VERSION:
        return False
    meta = params.get("_meta")
    if meta is not None and type(meta) is not dict:
        return False
    caps = params.get("clientCapabilities")
    if caps is not None:
        if type(caps) is not dict or not caps.keys() <= _CAPABILITY_KEYS:
            return False
        if not _plain_flag(caps.get("terminal")):
            return False
        fs = caps.get("fs")
        if fs is not None and (
            type(fs) is not dict
            or not fs.keys() <= _FS_KEYS
            or not all(_plain_flag(fs.get(key)) for key in ("readTextFile", "writeTextFile"))
        ):
            return False
    info = params.get("clientInfo")
    return info is None or (
        type(info) is dict
        and info.keys() <= _INFO_KEYS
        and type(info.get("name")) is str
        and type(info.get("version")) is str
        and (info.get("title") is None or type(info.get("title")) is str)
    )


def _field(value: Any, name: str, alias: str) -> Any:
    """A field of a model, or of the dict the schema put in its place."""
    if isinstance(value, dict):
        return value.get(alias)
    return getattr(value, name, None)


def read_initialize(params: Any) -> ClientInfo:
    """`initialize` params: the client's version and the capabilities convmgr uses."""
    if not plain_initialize(params):
        request = parse(schema().InitializeRequest, params)
        # The schema decodes leniently: a malformed part is replaced by a plain default dict.
        caps = request.client_capabilities
        fs = _field(caps, "fs", "fs")
        return ClientInfo(
            request.protocol_version,
            _field(fs, "read_text_file", "readTextFile") is True,
            _field(fs, "write_text_file", "writeTextFile") is True,
            _field(caps, "terminal", "terminal") is True,
        )
    caps = params.get("clientCapabilities") or {}
    fs = caps.get("fs") or {}
    return ClientInfo(
        params["protocolVersion"],
        fs.get("readTextFile") is True,
        fs.get("writeTextFile") is True,
        caps.get("terminal") is True,
    )


# --- sessions ---------------------------------------------------------------------------


def _plain_str_list(value: Any) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _plain_stdio_server(server: Any) -> bool:
    return (
        type(server) is dict
        and server.keys() == _STDIO_KEYS
        and type(server["name"]) is str
        and type(server["command"]) is str
        and _plain_str_list(server["args"])
        and type(server["env"]) is list
        and all(
            type(pair) is dict
            and pair.keys() == _ENV_KEYS
            and type(pair["name"]) is str
            and type(pair["value"]) is str
            for pair in server["env"]
        )
    )


def plain_new_session(params: Any) -> bool:
    """Whether `session/new` params have the usual shape (stdio MCP servers only)."""
    if type(params) is not dict or not params.keys() <= _NEW_KEYS:
        return False
    servers = params.get("mcpServers")
    meta = params.get("_meta")
    return (
        type(params.get("cwd")) is str
        and type(servers) is list
        and all(_plain_stdio_server(server) for server in servers)
        and (meta is None or type(meta) is dict)
    )


def _stdio_settings(name: str, command: str, args: list[str], env: list[tuple[str, str]]) -> (
    McpServerSettings
):
    # "ask": every call of a client's server goes through session/request_permission.
    return McpServerSettings(name, command, tuple(args), tuple(env))


def read_new_session(params: Any) -> NewSession:
    """`session/new` params: an absolute cwd and the stdio MCP servers."""
    if plain_new_session(params):
        servers = tuple(
            _stdio_settings(
                s["name"], s["command"], s["args"], [(e["name"], e["value"]) for e in s["env"]]
            )
            for s in params["mcpServers"]
        )
        return NewSession(absolute_cwd(params["cwd"]), servers)
    request = parse(schema().NewSessionRequest, params)
    return NewSession(absolute_cwd(request.cwd), stdio_servers(request.mcp_servers))


def read_session(model_name: str, params: Any) -> NewSession:
    """`session/load`, `session/resume` or `session/fork` params."""
    request = parse(getattr(schema(), model_name), params)
    return NewSession(
        absolute_cwd(request.cwd), stdio_servers(request.mcp_servers), request.session_id
    )


def stdio_servers(servers: list[Any] | None) -> tuple[McpServerSettings, ...]:
    """The stdio servers of a validated `mcpServers` list (the only kind convmgr starts)."""
    stdio = schema().McpServerStdio
    return tuple(
        _stdio_settings(s.name, s.command, s.args, [(e.name, e.value) for e in s.env])
        for s in servers or ()
        if isinstance(s, stdio)
    )


def absolute_cwd(cwd: str) -> str:
    """ACP requires an absolute working directory."""
    if not os.path.isabs(cwd):
        raise invalid(f"cwd must be an absolute path: {cwd!r}", "cwd")
    return cwd


# --- prompts ----------------------------------------------------------------------------


def _plain_block(block: Any) -> bool:
    if type(block) is not dict:
        return False
    kind = block.get("type")
    if kind == "text":
        return block.keys() == _TEXT_KEYS and type(block["text"]) is str
    if kind == "resource_link":
        return (
            block.keys() == _LINK_KEYS
            and type(block["uri"]) is str
            and type(block["name"]) is str
        )
    if kind == "resource":
        resource = block.get("resource")
        return (
            block.keys() == _EMBEDDED_KEYS
            and type(resource) is dict
            and {"uri", "text"} <= resource.keys() <= _TEXT_RESOURCE_KEYS
            and all(type(value) is str for value in resource.values())
        )
    return False


def plain_prompt(params: Any) -> bool:
    """Whether `session/prompt` params have the usual shape (text, links, text resources)."""
    if type(params) is not dict or not params.keys() <= _PROMPT_KEYS:
        return False
    prompt = params.get("prompt")
    meta = params.get("_meta")
    return (
        type(params.get("sessionId")) is str
        and type(prompt) is list
        and all(_plain_block(block) for block in prompt)
        and (meta is None or type(meta) is dict)
    )


def block_text(block: dict[str, Any]) -> str:
    """A plain content block as the model's text (links and blobs by their URI)."""
    kind = block["type"]
    if kind == "text":
        return str(block["text"])
    if kind == "resource_link":
        return f"[resource: {block['uri']}]"
    resource = block["resource"]
    text = resource.get("text")
    return text if isinstance(text, str) else f"[resource: {resource['uri']}]"


def read_prompt(params: Any) -> tuple[str, str]:
    """`session/prompt` params: the session id and the prompt as the model's text."""
    if plain_prompt(params):
        blocks = params["prompt"]
        session_id = params["sessionId"]
    else:
        request = parse(schema().PromptRequest, params)
        session_id = request.session_id
        blocks = [block.model_dump(by_alias=True, exclude_none=True) for block in request.prompt]
        for block in blocks:
            if block["type"] in ("image", "audio"):
                raise invalid(
                    f"{block['type']} content is not supported (see promptCapabilities)", "prompt"
                )
    return session_id, "\n".join(block_text(block) for block in blocks)
