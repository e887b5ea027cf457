"""Read a station YAML file into an :class:`EdgeAdConfig`, with one-line errors."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from edge_ad.config.schema import EdgeAdConfig
from edge_ad.errors import ConfigError

__all__ = ["describe_errors", "load_config", "read_yaml_model", "writable_dir"]

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path) -> EdgeAdConfig:
    """Load and validate a station config.

    Relative paths inside the file (``model.path``, ``service.state_dir``, a folder or video
    ``camera.source``) are resolved against the file's directory.

    Args:
        path: YAML file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: The file is missing, is not YAML, or fails validation.
    """
    path = Path(path)
    config = read_yaml_model(path, EdgeAdConfig, "config file", "pass --config with an existing file")
    return _resolve_paths(config, path.parent.resolve())


MAX_YAML_BYTES = 1_000_000  # a station config or recipe is a few KB


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (a 583-byte alias bomb took 2.2 GB) and duplicate keys."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in edge_ad files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the second would silently win)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> object:
    data = path.read_bytes()
    if len(data) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"file of {len(data)} bytes is larger than {MAX_YAML_BYTES}")
    return yaml.load(data.decode("utf-8"), Loader=_StrictLoader)


def read_yaml_model(path: Path, model: type[M], what: str, hint: str) -> M:
    """Parse a YAML mapping and validate it against ``model``; every failure is one ConfigError line.

    Args:
        path: The file.
        model: The pydantic model of the whole file.
        what: Name of the file kind for messages ("config file", "recipe").
        hint: What to do when the file does not exist.
    """
    try:
        raw = _load_yaml(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found; {hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}; {hint}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever YAML says
        raise ConfigError(f"{path}:{where} is not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(describe_errors(exc, model))) from None


def describe_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Turn pydantic errors into ``key.path: problem`` strings, suggesting near-miss keys."""
    messages = []
    for err in exc.errors():
        loc = ".".join(_key(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            known = _known_keys(root, err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1) if known else []
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            messages.append(f"{loc}: unknown key{hint}")
        elif err["type"] == "missing":
            messages.append(f"{loc}: required key is missing")
        else:
            got = repr(err.get("input"))
            messages.append(f"{loc}: {' '.join(err['msg'].split())} (got {got[:80]}{'...' if len(got) > 80 else ''})")
    return messages


def _key(part: object) -> str:
    """A key as it can be shown on one line (a key with control characters is shown quoted)."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        section = _section_model(getattr(field, "annotation", None))
        if section is None:
            return []
        model = section
    return sorted(model.model_fields)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a section, also when it is optional (``GenicamConfig | None``)."""
    candidates = [annotation, *get_args(annotation)]
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _resolve_mqtt(config: EdgeAdConfig, resolve) -> object:
    mqtt = config.mqtt
    update: dict = {}
    if mqtt.tls is not None:
        update["tls"] = mqtt.tls.model_copy(
            update={
                k: resolve(v) for k, v in (("ca", mqtt.tls.ca), ("cert", mqtt.tls.cert), ("key", mqtt.tls.key)) if v
            }
        )
    if mqtt.password_file is not None and not os.environ.get("CREDENTIALS_DIRECTORY"):
        update["password_file"] = resolve(mqtt.password_file)  # else looked up in the systemd credentials dir
    return mqtt.model_copy(update=update)


def _resolve_opcua(config: EdgeAdConfig, resolve, credentials: str | None) -> object:
    opcua = config.opcua
    users = [
        u.model_copy(update={"password_file": resolve(f)}) if (f := u.password_file) and not credentials else u
        for u in opcua.users
    ]
    keys = ("certificate", "private_key", "trusted_clients")
    files = {k: resolve(v.expanduser()) for k in keys if (v := getattr(opcua, k))}
    return opcua.model_copy(update={"users": users, **files})


def _resolve_paths(config: EdgeAdConfig, base: Path) -> EdgeAdConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    credentials = os.environ.get("CREDENTIALS_DIRECTORY")  # relative secrets are looked up there
    source = config.camera.source
    if isinstance(source, str) and "://" not in source and not source.startswith("/dev/"):
        candidate = Path(source).expanduser()
        source = str(resolve(candidate))
    return config.model_copy(
        update={
            "camera": config.camera.model_copy(update={"source": source}),
            "model": config.model.model_copy(update={"path": resolve(config.model.path.expanduser())}),
            "mqtt": _resolve_mqtt(config, resolve),
            "service": config.service.model_copy(update={"state_dir": resolve(config.service.state_dir.expanduser())}),
            "evidence": config.evidence.model_copy(
                update={"dir": resolve(config.evidence.dir.expanduser()) if config.evidence.dir else None}
            ),
            "cases": config.cases.model_copy(
                update={"path": resolve(config.cases.path.expanduser()) if config.cases.path else None}
            ),
            "commands": config.commands.model_copy(
                update={"secret_file": resolve(f) if (f := config.commands.secret_file) and not credentials else f}
            ),
            "security": config.security.model_copy(
                update={
                    "trusted_keys": [resolve(k.expanduser()) for k in config.security.trusted_keys],
                    "station_key": resolve(k.expanduser()) if (k := config.security.station_key) else None,
                }
            ),
            "opcua": _resolve_opcua(config, resolve, credentials),
            "console": config.console.with_base(base),
            "fleet": config.fleet.model_copy(
                update={"ca_file": resolve(f.expanduser()) if (f := config.fleet.ca_file) else None}
            ),
            "recalibration": config.recalibration.model_copy(
                update={
                    "defects_root": resolve(root.expanduser()) if (root := config.recalibration.defects_root) else None
                }
            ),
        }
    )


def writable_dir(path: Path, key: str) -> Path:
    """``path``, created if needed, after proving this user can write there (``key`` names it in the error)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot write to {path} ({exc.strerror}); set it to a writable directory") from None
    return path
