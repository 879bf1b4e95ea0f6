"""Firmware updates over MQTT: the wire format (protocol), the hub's link, the device side."""
