"""HTTP API, live dashboard and Prometheus metrics (``failback serve``); thin by design."""

from failback.api.app import create_app
from failback.api.server import ApiServer
from failback.api.settings import ApiSettings, resolve_settings

__all__ = ["ApiServer", "ApiSettings", "create_app", "resolve_settings"]
