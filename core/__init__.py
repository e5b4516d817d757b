"""The shared core: imported by every stage, importing none of them.

- `plant` / `config`: the plant model and the YAML loader whose errors name file, line and field;
- `devices`: the base of every driver's device model and the `shopfloor.drivers` registry (`registry`);
- `record`: `Sample`, `StatusEvent` and the uplink wire codec (one field list);
- `errors`, `times` (epoch microseconds), `mqtt` (broker URL parser and paho client factory).

Its own dependencies are pydantic and PyYAML; anything heavier (paho, protobuf) is imported where used.
"""
