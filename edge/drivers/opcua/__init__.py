"""OPC UA driver (asyncua): subscriptions with deadbands, poll tags, security with a trust list, browse."""

from edge.drivers.opcua.driver import OpcUaDriver

__all__ = ["OpcUaDriver"]
