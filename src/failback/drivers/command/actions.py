"""Plan steps performed by the command driver."""

from __future__ import annotations

from typing import Any

from failback.drivers.base import Action, StepContext
from failback.drivers.command.runner import (
    CommandInvocation,
    configured_action,
    require_success,
    result_output,
    run_command,
)
from failback.drivers.command.settings import MUTATING_COMMAND_ACTIONS
from failback.errors import FailbackError
from failback.hosts import CommandResult
from failback.model.plan import StepSpec


class CommandStep(Action):
    """Run a component's configured command (``params.action``) at ``spec.site``.

    ``check`` runs the action's check command when one is configured (exit 0 means
    the effect is already in place), which is what makes a resumed run skip an
    effect that happened before a crash. ``undo`` runs the configured undo command.
    """

    name = "command.run"

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        if spec.component is None or spec.site is None:
            raise FailbackError(f"step {spec.id}: command.run needs a component and a site")
        self.component = ctx.service.components[spec.component]
        self.action_name: str = spec.params["action"]
        self.configured = configured_action(self.component, spec.site, self.action_name)
        if self.configured is None:
            raise FailbackError(
                f"step {spec.id}: no {self.action_name!r} command for {spec.component} at"
                f" {spec.site}",
                hint="the topology file changed since the plan was made",
            )
        self.has_undo = bool(self.configured.undo)
        # a command that only looks (verify) may simply run again after a crash
        self.can_check = (
            bool(self.configured.check) or self.action_name not in MUTATING_COMMAND_ACTIONS
        )

    def _invocation(self, action: str) -> CommandInvocation:
        return CommandInvocation(
            service=self.ctx.service_name,
            component=self.spec.component or "",
            site=self.spec.site or "",
            action=action,
            run_id=self.ctx.run_id,
            from_site=self.ctx.options.get("from_site"),
            to_site=self.ctx.options.get("to_site"),
        )

    def _label(self, action: str) -> str:
        return f"{self.spec.component}@{self.spec.site} {action}"

    def _run(self, command: str, part: str = "") -> CommandResult:
        """Run one of this action's commands (``part``: "", "check", "undo",
        "undo_check") at its site, with its time limit."""
        name = f"{self.action_name}.{part}" if part else self.action_name
        return run_command(
            self.host(),
            self.component,
            command,
            self._invocation(name),
            timeout=self.configured.timeout,
        )

    def check(self) -> bool:
        if not self.configured.check:
            return False
        result = self._run(self.configured.check, "check")
        return result.ok

    def apply(self) -> dict[str, Any] | None:
        self.ctx.progress(f"running {self._label(self.action_name)}")
        result = self._run(self.configured.run)
        output = result_output(result)
        self.ctx.event(
            "command.output",
            f"{self._label(self.action_name)} exited {result.returncode}",
            data=output,
        )
        require_success(result, self._label(self.action_name))
        self.ctx.measure(f"{self.spec.id}.command_s", result.duration_s, "s")
        return output

    def verify(self) -> None:
        if self.configured.check:
            result = self._run(self.configured.check, "check")
            require_success(result, f"{self._label(self.action_name)} check after apply")
        site = self.component.sites.get(self.spec.site or "")
        if self.action_name == "fence" and site is not None and site.fences_site:
            # a declared site fence (power-off, cloud stop) whose check just passed: a
            # database fence at this site may proceed without the machine answering
            self.ctx.remember(f"site_fenced.{self.spec.site}", True)

    def undone(self) -> bool | None:
        """After a death inside the undo: only a declared ``undo_check`` that passes proves
        the undo took effect (then it is not run twice). A failing forward ``check`` is no
        proof: it also fails when the machine does not answer, or when the forward effect
        was never complete, and skipping the undo then could leave a second primary. No
        ``undo_check``, or one that fails: cannot tell (the undo runs again)."""
        if not self.configured.undo_check:
            return None
        result = self._run(self.configured.undo_check, "undo_check")
        return True if result.ok else None

    def undo(self) -> dict[str, Any] | None:
        assert self.configured.undo
        result = self._run(self.configured.undo, "undo")
        require_success(result, self._label(f"{self.action_name} undo"))
        return result_output(result)
