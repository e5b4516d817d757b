"""OPC UA device and tag keys (DESIGN.md "Plant config", opcua)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from core.devices import DeviceBase, Model, TagBase
from core.mqtt import redact_url


class Deadband(Model):
    type: Literal["absolute", "percent"]
    value: float = Field(ge=0)


OpcUaDataType = Literal["Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float",
                        "Double", "String"]
_DATA_TYPES = ("Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
               "String")
UNSIGNED_BITS = {"Byte": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}


class OpcUaTag(TagBase):
    node: str
    mode: Literal["subscribe", "poll"] = "subscribe"
    sampling_ms: float = Field(default=1000, gt=0)
    deadband: Deadband | None = None
    # the node's declared type (a counter of an unsigned type wraps there); `type: uint32` is accepted too
    data_type: OpcUaDataType | None = Field(default=None, validation_alias=AliasChoices("data_type", "type"))

    @field_validator("data_type", mode="before")
    @classmethod
    def _data_type(cls, v: object) -> object:
        names = {n.lower(): n for n in _DATA_TYPES}
        names.update({"float32": "Float", "float64": "Double", "bool": "Boolean", "int8": "SByte", "uint8": "Byte"})
        return names.get(v.lower(), v) if isinstance(v, str) else v

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not re.match(r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$", v):
            raise ValueError(f"not an OPC UA node id: {v!r} (e.g. ns=2;s=Line1.Count, ns=2;i=1001, nsu=URI;s=Name)")
        return v


class Security(Model):
    """Channel security. `policy` has no default: `None` (no signing, no encryption) is an explicit choice."""

    policy: Literal["None", "Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep"]
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: str | None = None
    private_key: str | None = None
    trust_dir: str | None = None
    username: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Security:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("security policy and mode must both be None or both be set")
        if self.policy != "None" and not (self.certificate and self.private_key):
            raise ValueError(f"security policy {self.policy} needs 'certificate' and 'private_key'")
        if self.policy != "None" and not self.trust_dir:
            raise ValueError(f"security policy {self.policy} needs 'trust_dir': the folder of trusted server "
                             "certificates (.der/.pem); the gateway connects only to servers listed there")
        return self


class OpcUaDevice(DeviceBase):
    driver: ClassVar[str] = "edge.drivers.opcua.driver:OpcUaDriver"

    protocol: Literal["opcua"]
    security: Security | None = None
    tags: list[OpcUaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _security_chosen(self) -> OpcUaDevice:
        if self.security is None:
            raise ValueError("opcua device needs 'security': {policy: Basic256Sha256, mode: SignAndEncrypt, "
                             "certificate, private_key, trust_dir}, or 'security: {policy: None}' to connect "
                             "without signing or encryption (logged as a warning at every start)")
        return self

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if not v.startswith("opc.tcp://"):
            raise ValueError(f"opcua endpoint must start with opc.tcp://, got {redact_url(v)!r}")
        return v

    def polled(self, tag: str) -> bool:
        return bool(self.tag(tag).mode == "poll")

    def counter_modulus(self, tag: str) -> float | None:
        bits = UNSIGNED_BITS.get(self.tag(tag).data_type or "")
        return None if bits is None else float(2**bits)
