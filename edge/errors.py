"""The edge's control-flow signal; domain errors live in core.errors."""

from core.errors import ShopfloorError


class NotConnected(ShopfloorError):  # noqa: N818 - control-flow signal, named like Benthos ErrNotConnected
    """A driver lost (or could not open) its transport; the runner reconnects with backoff."""
