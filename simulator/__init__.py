"""The simulated factory: machines with a known ground truth behind real OPC UA, Modbus TCP and MQTT endpoints."""
