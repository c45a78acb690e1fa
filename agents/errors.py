"""One exception root, subclasses named by cause. Every message is a sentence a user can act on."""

from __future__ import annotations

from agents.secrets import redact


class BatonError(Exception):
    """Root of every error Baton raises on purpose."""

    def __init__(self, *args: object) -> None:
        # Messages are shown to people and stored with runs: never with a secret in them
        # (a provider's error can quote the key it refused).
        if args and isinstance(args[0], str):
            args = (redact(args[0]), *args[1:])
        super().__init__(*args)


class ConfigError(BatonError):
    """Settings, agents, tools or playbooks are wrong (a missing key, an unknown agent...)."""


class PlanError(BatonError):
    """The plan is invalid: unknown agent or tool, a cycle, a dangling dependency, bad JSON."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class PlaybookError(BatonError):
    """A playbook file cannot be loaded or its inputs are wrong."""


class ModelError(BatonError):
    """The model provider failed or the model misbehaved."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class LimitExceeded(BatonError):
    """A run used up one of its caps (steps, model calls, tokens, money, turns, time)."""


class ToolArgumentsError(BatonError):
    """Arguments for a tool do not match its schema."""


class ApprovalError(BatonError):
    """A decision on an approval was refused (already decided, changed, expired, invalid edit)."""


class NotFound(BatonError):
    """No run, approval or handoff with that id."""
