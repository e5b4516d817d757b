"""Domain errors shared by every stage."""


class ShopfloorError(Exception):
    """Base of the project's own errors: printed as one clear line by the CLI."""


class ConfigError(ShopfloorError):
    """The plant file (or a flag) is invalid; the message names file, line and field."""


class NotConnected(ShopfloorError):  # noqa: N818 - control-flow signal, named like Benthos ErrNotConnected
    """A driver lost (or could not open) its transport; the runner reconnects with backoff."""


class DecodeError(ShopfloorError):
    """A payload could not be decoded; it goes to quarantine with this message."""
