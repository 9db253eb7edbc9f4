"""Run one configured command action for a component at a site."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from failback.errors import FailbackError, StepFailed
from failback.hosts import CommandResult, Host
from failback.model.secrets import Redactor, SecretRef

OUTPUT_LIMIT = 4000
"""Characters of stdout/stderr kept in the journal per command (the tail is kept)."""


@dataclass(frozen=True)
class CommandInvocation:
    """Who runs what: the context exported to the command as FAILBACK_* variables.

    FAILBACK_SERVICE, FAILBACK_COMPONENT, FAILBACK_SITE, FAILBACK_ACTION (``fence``,
    ``fence.check``, ``fence.undo``, ``observe``...) always; FAILBACK_RUN_ID,
    FAILBACK_FROM_SITE and FAILBACK_TO_SITE when the command runs in a run.
    """

    service: str
    component: str
    site: str
    action: str
    run_id: int | None = None
    from_site: str | None = None
    to_site: str | None = None


def site_actions(component: Any, site: str) -> Any:
    try:
        return component.sites[site]
    except KeyError as exc:
        raise FailbackError(
            f"component has no site {site!r}",
            hint=f"sites of this component: {', '.join(component.sites)}",
        ) from exc


def configured_action(component: Any, site: str, action: str) -> Any | None:
    """The CommandAction configured for ``action`` at ``site``, or None."""
    return getattr(site_actions(component, site), action, None)


def command_environment(
    component: Any, invocation: CommandInvocation
) -> tuple[dict[str, str], Redactor]:
    """The variables a command gets beyond the host's allow-list, and what to mask.

    The component's declared ``env:`` (secret references read now, at run time, so a
    rotated secret is picked up and a missing one fails this command, not the load),
    then the ``FAILBACK_*`` context, which a declaration cannot override. The
    returned redactor masks every secret value, to be applied to whatever the
    command prints before anyone stores or shows it.
    """
    env: dict[str, str] = {}
    secrets: list[str] = []
    for name, value in (component.options.env or {}).items():
        if isinstance(value, SecretRef):
            resolved = value.resolve()
            secrets.append(resolved)
            env[str(name)] = resolved
        else:
            env[str(name)] = str(value)
    env.update(
        {
            "FAILBACK_SERVICE": invocation.service,
            "FAILBACK_COMPONENT": invocation.component,
            "FAILBACK_SITE": invocation.site,
            "FAILBACK_ACTION": invocation.action,
        }
    )
    if invocation.run_id is not None:
        env["FAILBACK_RUN_ID"] = str(invocation.run_id)
    if invocation.from_site:
        env["FAILBACK_FROM_SITE"] = invocation.from_site
    if invocation.to_site:
        env["FAILBACK_TO_SITE"] = invocation.to_site
    return env, Redactor(secrets)


def run_command(
    host: Host,
    component: Any,
    command: str,
    invocation: CommandInvocation,
    *,
    timeout: float | None,
) -> CommandResult:
    """Run one configured command; its output comes back with secrets masked.

    Masking here, before the result goes anywhere, covers every place it is shown:
    the ``command.output`` event, the step's journaled output, error messages (which
    quote the output's tail), ``failback run show`` and the API. Raises
    ``FailbackError`` when a secret reference cannot be read.
    """
    options = component.options
    env, redactor = command_environment(component, invocation)
    effective_timeout = timeout if timeout is not None else options.timeout
    result = host.run([options.shell, "-c", command], timeout=effective_timeout, env=env)
    return replace(
        result,
        argv=tuple(redactor.text(arg) for arg in result.argv),
        stdout=redactor.text(result.stdout),
        stderr=redactor.text(result.stderr),
    )


def result_output(result: CommandResult) -> dict[str, Any]:
    """The journal's record of a command: exit status, duration, output tails."""
    return {
        "command": result.argv[-1],
        "exit": result.returncode,
        "timed_out": result.timed_out,
        "duration_s": round(result.duration_s, 4),
        "stdout": result.stdout[-OUTPUT_LIMIT:],
        "stderr": result.stderr[-OUTPUT_LIMIT:],
    }


def require_success(result: CommandResult, what: str) -> None:
    if result.timed_out:
        raise StepFailed(
            f"{what}: timed out after {result.duration_s:.1f}s",
            hint="raise the action's timeout in the topology file (a stopped run continues"
            " with it through `failback resume ID --reload`), or fix the command",
        )
    if result.returncode != 0:
        tail = result.tail()
        raise StepFailed(
            f"{what}: exit status {result.returncode}" + (f" ({tail})" if tail else ""),
            hint="the command's full output is in `failback run show ID`",
        )
