"""The providers a server can use, by name."""

from convmgr.model import InvalidArgument
from convmgr.providers.base import Provider
from convmgr.providers.echo import EchoProvider


class ProviderRegistry:
    """Named providers and the default one."""

    def __init__(self, providers: dict[str, Provider], default: str) -> None:
        if default not in providers:
            raise ValueError(f"default provider {default!r} is not configured")
        self._providers = providers
        self.default = default

    @classmethod
    def echo_only(cls) -> "ProviderRegistry":
        """A registry with just the built-in echo provider."""
        return cls({"echo": EchoProvider()}, "echo")

    def get(self, name: str | None) -> Provider:
        """The provider of that name (the default for None); InvalidArgument if unknown."""
        provider = self._providers.get(self.default if name is None else name)
        if provider is None:
            known = ", ".join(sorted(self._providers))
            raise InvalidArgument(
                f"unknown provider {name!r} (configured: {known})", {"field": "provider"}
            )
        return provider

    def all(self) -> list[Provider]:
        """Every configured provider, in configuration order."""
        return list(self._providers.values())

    async def aclose(self) -> None:
        """Close every provider's connections."""
        for provider in self._providers.values():
            await provider.aclose()
