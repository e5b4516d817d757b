"""MQTT driver: JSON payloads on (wildcard) topics mapped to tags with json_path."""

from edge.drivers.mqtt.driver import MqttDriver

__all__ = ["MqttDriver"]
