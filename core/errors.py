"""Domain errors shared by every stage: the CLI prints them as one line."""


class ShopfloorError(Exception):
    """Base of the project's own errors: printed as one clear line by the CLI."""


class ConfigError(ShopfloorError):
    """The plant file (or a flag) is invalid; the message names file, line and field."""


class DecodeError(ShopfloorError):
    """A payload could not be decoded; it goes to quarantine with this message."""


class UnavailableError(ShopfloorError):
    """A service the command needs (database, broker) cannot be reached; the message says which and what to check."""
