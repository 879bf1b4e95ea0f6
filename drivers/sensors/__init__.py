"""Environmental sensors: payload decoding, the MQTT and CoAP drivers, and a fleet simulator.

Modules: ``payloads`` (JSON, SenML JSON/CBOR, status), ``mqtt`` (SensorMqttDriver),
``coap`` (SensorCoapDriver), ``simulator`` (SensorSimulator, run_sensor_fleet),
``errors`` (transport failures). The protocol is docs/protocol/sensors.md.
"""
