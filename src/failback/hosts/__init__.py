"""Where drivers' actions run. Drivers never call subprocess or open files directly."""

from failback.hosts.base import INHERITED_ENV, CommandResult, Host
from failback.hosts.local import LocalHost

__all__ = ["INHERITED_ENV", "CommandResult", "Host", "LocalHost"]
