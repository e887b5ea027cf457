"""Station configuration: pydantic schema and YAML loader."""

from edge_ad.config.camera import CameraConfig
from edge_ad.config.cases import CasesConfig
from edge_ad.config.commands import CommandsConfig
from edge_ad.config.console import ConsoleConfig
from edge_ad.config.evidence import EvidenceConfig
from edge_ad.config.fleet import FleetConfig
from edge_ad.config.loader import load_config
from edge_ad.config.model import ModelConfig
from edge_ad.config.mqtt import MqttConfig
from edge_ad.config.opcua import OpcUaConfig, OpcUaUser
from edge_ad.config.recalibration import RecalibrationConfig
from edge_ad.config.schema import EdgeAdConfig
from edge_ad.config.security import SecurityConfig
from edge_ad.config.service import ServiceConfig
from edge_ad.config.sparkplug import SparkplugConfig

__all__ = [
    "CameraConfig",
    "CasesConfig",
    "CommandsConfig",
    "ConsoleConfig",
    "EdgeAdConfig",
    "EvidenceConfig",
    "FleetConfig",
    "ModelConfig",
    "MqttConfig",
    "OpcUaConfig",
    "OpcUaUser",
    "RecalibrationConfig",
    "SecurityConfig",
    "ServiceConfig",
    "SparkplugConfig",
    "load_config",
]
