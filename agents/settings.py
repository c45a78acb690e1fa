"""Engine settings, read once from the environment (every setting is documented in README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.errors import ConfigError

DEFAULT_MODEL = "openai/gpt-4o-mini"


@dataclass(frozen=True)
class Limits:
    """Per-run caps. A run that reaches one fails with a message naming the cap."""

    max_steps: int = 20
    max_model_calls: int = 60
    max_tokens: int = 400_000
    max_cost_usd: float = 2.0
    step_timeout_s: float = 600.0
    max_goal_chars: int = 8_000
    #: The same tool call (tool and arguments) allowed this many times in one step.
    max_repeat_calls: int = 3


RISKS = ("read_only", "writes", "external")


@dataclass(frozen=True)
class CheckpointTimings:
    """When a pending approval gets a reminder, is escalated, and expires (failing closed)."""

    remind_s: float = 4 * 3600.0
    escalate_s: float = 24 * 3600.0
    expire_s: float = 72 * 3600.0


@dataclass(frozen=True)
class Settings:
    """Everything the engine needs to know from the outside world."""

    database_url: str = "sqlite:///baton.db"
    model: str = DEFAULT_MODEL
    planner_model: str | None = None
    plugins: tuple[str, ...] = ()
    #: The config folder: agents/*.yaml, playbooks/*.yaml, mcp.yaml (missing → built-ins only).
    config_dir: str = "config"
    #: Where named playbooks live (``/orchestrate playbook NAME`` reads NAME.yaml from here).
    playbook_dir: str = os.path.join("config", "playbooks")
    limits: Limits = field(default_factory=Limits)
    #: Steps running at once across all runs of this process.
    concurrency: int = 16
    #: Retries of a transient model error (timeout, 429, 5xx) before the step fails.
    model_retries: int = 4
    retry_base_s: float = 0.5
    retry_max_s: float = 20.0
    model_timeout_s: float = 120.0
    #: A write-risk tool needs approval unless this is false; external tools always do.
    approve_writes: bool = True
    #: How long a process's claim on a run lasts without renewal.
    lease_s: float = 30.0
    #: Due work later than this when Baton comes back is reported missed, not run late.
    missed_grace_s: float = 3600.0
    #: Check outbound text (emails, posts) against the run's evidence before it is sent.
    grounding: bool = True
    #: Model of the grounding check (None → ``model``).
    grounding_model: str | None = None
    #: Times one outbound message (a tool and its recipients) is sent back to its agent with
    #: its flags before a person decides.
    grounding_retries: int = 2
    #: What the sender says of themselves (text, or ``@path`` to a file): the only evidence
    #: for claims about the sender ("we cut test time by 40%").
    sender_profile: str = ""
    #: Whether a person may send a flagged outbound call anyway: ``confirm`` (with a
    #: confirmation that lists the flags, audited) or ``never`` (send back or edit only).
    grounding_override: str = "confirm"
    #: An outbound address nobody supplied for the run: ``flag`` it on the approval, or
    #: ``refuse`` the call (BATON_RECIPIENT_POLICY).
    recipient_policy: str = "flag"
    #: ``http_fetch`` of a host the run was not given: ``approve`` (a person decides) or
    #: ``refuse`` (BATON_FETCH_EGRESS).
    fetch_egress: str = "approve"
    #: Hosts or registrable domains any run may fetch without asking (BATON_FETCH_ALLOW_HOSTS).
    fetch_allow_hosts: tuple[str, ...] = ()
    #: Spend per requester and per Slack workspace since UTC midnight, in dollars (0 = no cap).
    max_cost_usd_per_user_day: float = 0.0
    max_cost_usd_per_workspace_day: float = 0.0
    #: Checkpoint timings per risk level: remind, escalate, expire (seconds; 0 = never).
    checkpoint_timings: dict[str, CheckpointTimings] = field(
        default_factory=lambda: {r: CheckpointTimings() for r in RISKS}
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``BATON_*`` variables; a malformed value is a clear error."""
        env = os.environ if env is None else env
        d = Limits()
        limits = Limits(
            max_steps=_int(env, "BATON_MAX_STEPS", d.max_steps),
            max_model_calls=_int(env, "BATON_MAX_MODEL_CALLS", d.max_model_calls),
            max_tokens=_int(env, "BATON_MAX_TOKENS", d.max_tokens),
            max_cost_usd=_float(env, "BATON_MAX_COST_USD", d.max_cost_usd),
            step_timeout_s=_float(env, "BATON_STEP_TIMEOUT", d.step_timeout_s),
            max_goal_chars=_int(env, "BATON_MAX_GOAL_CHARS", d.max_goal_chars),
            max_repeat_calls=_int(env, "BATON_MAX_REPEAT_CALLS", d.max_repeat_calls),
        )
        base = cls()
        return cls(
            database_url=env.get("BATON_DATABASE_URL") or base.database_url,
            model=env.get("BATON_MODEL") or base.model,
            planner_model=env.get("BATON_PLANNER_MODEL") or None,
            plugins=tuple(p.strip() for p in env.get("BATON_PLUGINS", "").split(",") if p.strip()),
            config_dir=env.get("BATON_CONFIG_DIR") or base.config_dir,
            playbook_dir=env.get("BATON_PLAYBOOK_DIR")
            or os.path.join(env.get("BATON_CONFIG_DIR") or base.config_dir, "playbooks"),
            limits=limits,
            concurrency=_int(env, "BATON_CONCURRENCY", base.concurrency),
            model_retries=_int(env, "BATON_MODEL_RETRIES", base.model_retries),
            retry_base_s=_float(env, "BATON_RETRY_BASE", base.retry_base_s),
            retry_max_s=_float(env, "BATON_RETRY_MAX", base.retry_max_s),
            model_timeout_s=_float(env, "BATON_MODEL_TIMEOUT", base.model_timeout_s),
            approve_writes=_bool(env, "BATON_APPROVE_WRITES", base.approve_writes),
            lease_s=_float(env, "BATON_LEASE_SECONDS", base.lease_s),
            missed_grace_s=_duration(env, "BATON_MISSED_GRACE", base.missed_grace_s),
            grounding=_bool(env, "BATON_GROUNDING", base.grounding),
            grounding_model=env.get("BATON_GROUNDING_MODEL") or None,
            grounding_retries=_int(env, "BATON_GROUNDING_RETRIES", base.grounding_retries),
            sender_profile=env.get("BATON_SENDER_PROFILE") or "",
            grounding_override=_override(env, base.grounding_override),
            recipient_policy=_choice(env, "BATON_RECIPIENT_POLICY", ("flag", "refuse")),
            fetch_egress=_choice(env, "BATON_FETCH_EGRESS", ("approve", "refuse")),
            fetch_allow_hosts=_hosts(env, "BATON_FETCH_ALLOW_HOSTS"),
            checkpoint_timings={risk: _timings(env, risk) for risk in RISKS},
            max_cost_usd_per_user_day=_float(env, "BATON_MAX_COST_USD_PER_USER_DAY", 0.0),
            max_cost_usd_per_workspace_day=_float(env, "BATON_MAX_COST_USD_PER_WORKSPACE_DAY", 0.0),
        )


def _override(env: Mapping[str, str], default: str) -> str:
    raw = (env.get("BATON_GROUNDING_OVERRIDE") or "").strip().lower()
    if raw in ("never", "confirm"):
        return raw
    if raw:
        raise ConfigError(f"BATON_GROUNDING_OVERRIDE must be never or confirm, got {raw!r}")
    return default


def _choice(env: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first when unset); anything else is a clear error."""
    raw = (env.get(key) or "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise ConfigError(f"{key} must be {' or '.join(choices)}, got {raw!r}")
    return raw


def _hosts(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A comma list of host names or domains ("docs.acme.example, partner.example")."""
    found = []
    for raw in (env.get(key) or "").split(","):
        host = raw.strip().lower().lstrip("*").strip(".")
        if raw.strip() and (not host or "/" in host or ":" in host or "@" in host):
            raise ConfigError(f"{key} takes host names like docs.example.com, got {raw.strip()!r}")
        if host:
            found.append(host)
    return tuple(found)


def _timings(env: Mapping[str, str], risk: str) -> CheckpointTimings:
    d = CheckpointTimings()
    values = []
    for name, default in (
        ("REMIND_AFTER", d.remind_s),
        ("ESCALATE_AFTER", d.escalate_s),
        ("EXPIRE_AFTER", d.expire_s),
    ):
        general = _duration(env, f"BATON_{name}", default)
        values.append(_duration(env, f"BATON_{name}_{risk.upper()}", general))
    return CheckpointTimings(*values)


def _duration(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in ("0", "off", "never", "none"):
        return 0.0
    from agents.errors import PlanError
    from agents.timing import parse_duration

    try:
        return parse_duration(raw)
    except PlanError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{key} must not be negative, got {raw!r}")
    return value


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{key} must not be negative, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")
