"""Shopfloor: shop-floor data collector and KPI engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shopfloor")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"
