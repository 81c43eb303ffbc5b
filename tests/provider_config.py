"""A configuration file with one provider on a fake server, for the tests that spawn convmgr."""

from pathlib import Path


def write_provider_config(
    tmp_path: Path,
    base_url: str,
    *,
    kind: str = "openai-chat",
    key_env: str | None = None,
    max_retries: int = 0,
    extra: str = "",
) -> Path:
    """`config.toml` in tmp_path: provider `fake` (the default, model `ok`), then `extra`."""
    key = f'api_key_env = "{key_env}"\n' if key_env else ""
    path = tmp_path / "config.toml"
    path.write_text(
        f"""default_provider = "fake"

[providers.fake]
kind = "{kind}"
base_url = "{base_url}"
{key}default_model = "ok"
max_retries = {max_retries}
retry_base_delay_s = 0.01
{extra}""",
        encoding="utf-8",
    )
    return path
