"""A tool result (MCP's CallToolResult shape, as plain JSON) as the text the model gets."""

import json
from typing import Any

from convmgr.model import ToolOutcome


class MalformedResult(ValueError):
    """The answer is not a CallToolResult: no `content` list of typed blocks."""


def outcome_of_result(result: object) -> ToolOutcome:
    """A CallToolResult (`{content: [...], structuredContent?, isError?}`) as a ToolOutcome.

    Text blocks are kept; an image or audio block becomes `[image: MIME, N bytes]`;
    an embedded resource its text or `[resource: URI]`; a resource link
    `[resource: URI]`. structuredContent without any text block becomes its JSON.
    Raises MalformedResult when the value is not of that shape.
    """
    if not isinstance(result, dict):
        raise MalformedResult("the result is not an object")
    if "content" not in result:
        raise MalformedResult("a CallToolResult needs `content`")
    content = result["content"]
    is_error = result.get("isError", False)
    if not isinstance(content, list) or not isinstance(is_error, bool):
        raise MalformedResult("`content` must be a list and `isError` a boolean")
    texts: list[str] = []
    has_text = False
    for block in content:
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise MalformedResult("every content block must be an object with a `type`")
        text, is_text = _block_text(block)
        has_text = has_text or is_text
        texts.append(text)
    structured = result.get("structuredContent")
    if structured is not None and not has_text:
        texts.append(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))
    return ToolOutcome("\n".join(texts), is_error=is_error)


def _block_text(block: dict[str, Any]) -> tuple[str, bool]:
    """One content block's text, and whether it was a text block."""
    kind = block["type"]
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise MalformedResult("a text block needs a string `text`")
        return text, True
    if kind in ("image", "audio"):
        data = block.get("data")
        size = _decoded_size(data) if isinstance(data, str) else 0
        return f"[{kind}: {block.get('mimeType', 'application/octet-stream')}, {size} bytes]", False
    if kind == "resource":
        resource = block.get("resource")
        if isinstance(resource, dict):
            if isinstance(resource.get("text"), str):
                return str(resource["text"]), False
            return f"[resource: {resource.get('uri', '?')}]", False
        raise MalformedResult("a resource block needs a `resource` object")
    if kind == "resource_link":
        return f"[resource: {block.get('uri', '?')}]", False
    return f"[{kind}]", False


def _decoded_size(data: str) -> int:
    """The byte length of base64 text, without decoding it."""
    stripped = data.rstrip("=")
    return len(stripped) * 3 // 4
