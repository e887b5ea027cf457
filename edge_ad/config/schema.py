"""Root of the station configuration."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from edge_ad.config.base import EdgeAdModel
from edge_ad.config.camera import CameraConfig
from edge_ad.config.cases import CasesConfig
from edge_ad.config.commands import CommandsConfig
from edge_ad.config.console import ConsoleConfig
from edge_ad.config.evidence import EvidenceConfig
from edge_ad.config.fleet import FleetConfig
from edge_ad.config.model import ModelConfig
from edge_ad.config.mqtt import MqttConfig
from edge_ad.config.opcua import OpcUaConfig
from edge_ad.config.recalibration import RecalibrationConfig
from edge_ad.config.security import SecurityConfig
from edge_ad.config.service import ServiceConfig
from edge_ad.config.sparkplug import SparkplugConfig

__all__ = ["STATION_MAX_LENGTH", "STATION_PATTERN", "EdgeAdConfig", "valid_station"]

STATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # an MQTT topic level, a file name and a systemd instance
STATION_MAX_LENGTH = 64


def valid_station(name: str) -> bool:
    """Whether ``name`` is usable as a station name (the rule the schema enforces)."""
    return len(name) <= STATION_MAX_LENGTH and re.fullmatch(STATION_PATTERN, name) is not None


class EdgeAdConfig(EdgeAdModel):
    """One inspection station: a camera, a model bundle and a broker."""

    station: str = Field(
        pattern=STATION_PATTERN,
        max_length=STATION_MAX_LENGTH,
        description="Station name, used in MQTT topics (edge_ad/<station>/...) and logs.",
    )
    camera: CameraConfig
    model: ModelConfig
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    recalibration: RecalibrationConfig = Field(default_factory=RecalibrationConfig)
    cases: CasesConfig = Field(default_factory=CasesConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)
    opcua: OpcUaConfig = Field(default_factory=OpcUaConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)

    @model_validator(mode="after")
    def _commands_need_authentication(self) -> EdgeAdConfig:
        if self.recalibration.mqtt_command and not self.mqtt.username:
            raise ValueError(
                "recalibration.mqtt_command needs mqtt.username (and a password): "
                "commands are only accepted on a broker that authenticates its users"
            )
        if self.recalibration.mqtt_command and not self.commands.has_secret:
            raise ValueError(
                "recalibration.mqtt_command needs commands.secret_file or commands.secret_env: "
                "the station accepts only commands signed with its key"
            )
        return self

    @model_validator(mode="after")
    def _installs_need_authentication_and_trusted_keys(self) -> EdgeAdConfig:
        if not self.fleet.accept_installs:
            return self
        if not self.mqtt.username:
            raise ValueError(
                "fleet.accept_installs needs mqtt.username (and a password): "
                "commands are only accepted on a broker that authenticates its users"
            )
        if not self.commands.has_secret:
            raise ValueError(
                "fleet.accept_installs needs commands.secret_file or commands.secret_env: "
                "the station accepts only commands signed with its key"
            )
        if not self.security.trusted_keys:
            raise ValueError(
                "fleet.accept_installs needs security.trusted_keys: a station installs only bundles signed by a "
                "key it trusts (add the workstation's public key from 'edge-ad keys new')"
            )
        if not self.fleet.url_prefixes:
            raise ValueError(
                "fleet.accept_installs needs fleet.url_prefixes: the file servers packages may be downloaded from, "
                "e.g. https://files.plant.local/bundles/"
            )
        return self

    @model_validator(mode="after")
    def _genicam_trigger_matches_the_service_mode(self) -> EdgeAdConfig:
        trigger, mode = self.camera.genicam_trigger, self.service.mode
        if trigger == "software" and mode != "triggered":
            raise ValueError(
                "camera.genicam.trigger: software fires the camera on each trigger message; it needs "
                "service.mode: triggered"
            )
        if trigger == "hardware" and (mode != "free_run" or self.service.every_nth != 1):
            raise ValueError(
                "camera.genicam.trigger: hardware judges every frame the trigger line produces; it needs "
                "service.mode: free_run (service.every_nth: 1)"
            )
        return self

    @model_validator(mode="after")
    def _sparkplug_has_a_client_of_its_own(self) -> EdgeAdConfig:
        json_client = self.mqtt.client_id or f"edge-ad-{self.station}"
        if self.sparkplug.enabled and self.sparkplug.client_id_for(self.station) == json_client:
            raise ValueError(
                "sparkplug.client_id must differ from the JSON client's id (mqtt.client_id): the broker would "
                "disconnect one client whenever the other connects"
            )
        return self
