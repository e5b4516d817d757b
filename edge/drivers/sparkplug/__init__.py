"""Sparkplug B driver: births, alias-only data, sequence checks and rebirth requests for one edge node."""

from edge.drivers.sparkplug.driver import SparkplugDriver

__all__ = ["SparkplugDriver"]
