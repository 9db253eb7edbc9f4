"""Where drivers' actions run. Drivers never call subprocess or open files directly."""

from failback.hosts.base import INHERITED_ENV, CommandResult, Host
from failback.hosts.check import HostCheck
from failback.hosts.check import check as check_host
from failback.hosts.hostset import HostSet
from failback.hosts.local import LocalHost
from failback.hosts.ssh import SshHost, SshTarget
from failback.hosts.ssh_errors import CommandCancelled, HostError, HostUnreachable

__all__ = [
    "INHERITED_ENV",
    "CommandCancelled",
    "CommandResult",
    "Host",
    "HostCheck",
    "HostError",
    "HostSet",
    "HostUnreachable",
    "LocalHost",
    "SshHost",
    "SshTarget",
    "check_host",
]
