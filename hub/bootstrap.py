"""From a config directory to a ready Hub: load plugins, validate everything, then build the hub.

Nothing starts until the whole configuration (core and every plugin's block) has been validated.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol

from hub.automation.config import automation_block, check_automations
from hub.charging.site import SITE_SCHEMA, Site
from hub.clock import Clock
from hub.config import (
    ConfigError,
    SecretRedactor,
    Secrets,
    load_configuration,
    validate_configuration,
)
from hub.core import Hub
from hub.plugins import PluginHost
from web.config import HTTP_SCHEMA

_LOGGER = logging.getLogger(__name__)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _time_zone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise vol.Invalid(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return str(value)


HUB_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default="evhub"): str,
        vol.Optional("time_zone", default="UTC"): _time_zone,
        vol.Optional("currency", default="EUR"): vol.All(str, vol.Match(r"^[A-Z]{3}$")),
    }
)

RECORDER_SCHEMA = vol.Schema(
    {
        vol.Optional("db_url"): str,
        vol.Optional("purge_keep_days", default=10): vol.All(int, vol.Range(min=1)),
        vol.Optional("attribute_interval", default=60.0): vol.All(
            vol.Coerce(float), vol.Range(min=0)
        ),
        vol.Optional("commit_interval", default=1.0): vol.All(
            vol.Coerce(float), vol.Range(min=0.05, max=60)
        ),
        vol.Optional("exclude", default={}): {
            vol.Optional("domains", default=[]): [str],
            vol.Optional("entities", default=[]): [str],
            vol.Optional("event_types", default=[]): [str],
        },
    }
)

LOGGER_SCHEMA = vol.Schema(
    {
        vol.Optional("default", default="info"): vol.In(LOG_LEVELS),
        vol.Optional("logs", default={}): {str: vol.In(LOG_LEVELS)},
    }
)

CORE_SCHEMAS: dict[str, Any] = {
    "hub": HUB_SCHEMA,
    "recorder": RECORDER_SCHEMA,
    "logger": LOGGER_SCHEMA,
    "site": SITE_SCHEMA,
    # Only "a list" here: each automation is validated on its own (check_automations), so one
    # broken automation is reported and shown unavailable while the hub and the others run.
    "automation": automation_block,
    "http": HTTP_SCHEMA,  # the web UI and API run only when this block is present
}


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def load_plugins() -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    return host


def check_config(
    config_dir: Path, host: PluginHost | None = None, *, automations: bool = True
) -> tuple[dict[str, Any], Secrets | None, list[ConfigError]]:
    """Load and validate; returns (validated config, secrets, every error found).

    `automations=False` (what `create_hub` asks) leaves each automation's own errors to the
    automation component, which logs them and keeps the others running."""
    host = host or load_plugins()
    try:
        raw, secrets = load_configuration(config_dir)
    except ConfigError as err:
        return {}, None, [err]
    schemas = {**host.config_schemas(), **CORE_SCHEMAS}
    for record in host.records.values():
        clash = set(record.domains) & set(CORE_SCHEMAS)
        if clash:
            raise ConfigInvalid([ConfigError(f"plugin {record.name} claims core domain {clash}")])
    # Core domains get their defaults even when configuration.yaml omits them.
    for domain in ("hub", "recorder", "logger"):
        raw.setdefault(domain, {})  # in place: the loaded mapping keeps each key's line
    config, errors = validate_configuration(raw, schemas)
    if automations and "automation" in config:
        errors += check_automations(config["automation"], host)
    return config, secrets, errors


def create_hub(
    config_dir: Path | str, *, clock: Clock | None = None, host: PluginHost | None = None
) -> Hub:
    """Validate the configuration and build (not start) the hub; raises ConfigInvalid."""
    config_dir = Path(config_dir)
    host = host or load_plugins()
    config, secrets, errors = check_config(config_dir, host, automations=False)
    if errors:
        raise ConfigInvalid(errors)
    if secrets is not None:
        install_secret_redaction(secrets)
    configure_log_levels(config["logger"])
    hub = Hub(config_dir, clock=clock, config=config)
    hub.plugins = host
    host.hub = hub
    if "site" in config:
        hub.site = Site.from_config(config["site"])
    hub.recorder = _recorder(hub, config_dir, config["recorder"])
    if "http" in config:
        from web.server import WebServer  # aiohttp apps and jinja2: only when the UI runs

        hub.http = WebServer(hub, config["http"])
    return hub


def _recorder(hub: Hub, config_dir: Path, conf: Mapping[str, Any]) -> Any:
    from hub.storage.recorder import Recorder  # SQLAlchemy is heavy; check-config need not pay

    url = resolve_db_url(conf.get("db_url"), config_dir)
    exclude = conf["exclude"]
    return Recorder(
        hub,
        url,
        purge_keep_days=conf["purge_keep_days"],
        commit_interval=conf["commit_interval"],
        attribute_interval=conf["attribute_interval"],
        exclude_domains=exclude["domains"],
        exclude_entities=exclude["entities"],
        exclude_event_types=exclude["event_types"],
    )


def resolve_db_url(url: str | None, config_dir: Path) -> str:
    """SQLite paths are relative to the config dir, not to wherever the hub was started from."""
    from sqlalchemy.engine import make_url

    if not url:
        return f"sqlite:///{(config_dir / 'evhub.db').resolve()}"
    parsed = make_url(url)
    db = parsed.database
    relative = db and db != ":memory:" and not Path(db).is_absolute()
    if parsed.get_backend_name() == "sqlite" and relative:
        return parsed.set(database=str((config_dir / db).resolve())).render_as_string(
            hide_password=False
        )
    return url


# --- logging ------------------------------------------------------------------------------
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    """Root handler on stderr; called once by the CLI before the config is read."""
    root = logging.getLogger()
    if not any(getattr(h, "_evhub", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._evhub = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that chatter at INFO about every connection or query.
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_log_levels(conf: Mapping[str, Any]) -> None:
    logging.getLogger().setLevel(conf.get("default", "info").upper())
    for name, level in conf.get("logs", {}).items():
        logging.getLogger(name).setLevel(level.upper())


def install_secret_redaction(secrets: Secrets) -> None:
    """Secrets from secrets.yaml never reach a log line, whoever logs them."""
    redactor = SecretRedactor(secrets.used_values)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretRedactor) for f in handler.filters):
            handler.addFilter(redactor)
