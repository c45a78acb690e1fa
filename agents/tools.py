"""Tools: plain async functions with type hints, a declared risk, and a schema made from hints.

    @tool(risk=Risk.WRITES, idempotent=True)
    async def update_crm(account: str, note: str, ctx: ToolContext) -> str:
        '''Record a note on an account in the CRM.'''

The JSON schema the model sees comes from the signature (pydantic), arguments are validated
strictly before the call, and a parameter annotated ``ToolContext`` receives the run, step and
idempotency key instead of appearing in the schema. The risk is fixed here, in code: the model
cannot talk its way past an approval.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from agents.errors import ConfigError, ToolArgumentsError


class Risk(StrEnum):
    """How much harm a call can do; decides whether a human must approve it."""

    READ_ONLY = "read_only"
    WRITES = "writes"
    EXTERNAL = "external"


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    run_id: str
    step_id: str
    idempotency_key: str
    attempt: int = 1


ToolFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    """A callable the agents may use, with its schema and risk."""

    name: str
    description: str
    fn: ToolFunction
    risk: Risk
    idempotent: bool
    #: Pydantic model of the arguments (tools made from functions); or see ``json_schema``.
    args_model: type[BaseModel] | None
    context_param: str | None = None
    #: Tools the runtime handles itself (handoffs) rather than calling ``fn``.
    control: bool = False
    #: Arguments whose text reaches people outside (an email body, a channel post): checked
    #: against the run's evidence before the call (``agents.grounding``).
    outbound: tuple[str, ...] = ()
    #: Arguments that name who receives what the tool sends (``to``, ``cc``, ``bcc``): only
    #: addresses a person supplied for the run may be there (``agents.recipients``).
    recipients: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: A raw JSON schema of the arguments (tools that bring their own, e.g. from MCP servers),
    #: checked with ``jsonschema``; then ``fn(arguments, ctx)`` is called with the dict.
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.args_model is None) == (self.json_schema is None):
            raise ConfigError(f"Tool {self.name} needs exactly one of args_model or json_schema")

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema (built once: it is sent on every model turn)."""
        cached = self.extra.get("schema")
        if cached is None:
            if self.json_schema is not None:
                params = dict(self.json_schema)
            else:
                params = _model(self).model_json_schema()
            params.pop("title", None)
            cached = {
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": self.description,
                    "parameters": params,
                },
            }
            self.extra["schema"] = cached
        return dict(cached)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check arguments against the schema; returns them normalised, or raises."""
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"{self.name} takes a JSON object of arguments, got {type(arguments).__name__}"
            )
        if self.json_schema is not None:
            return _check_json(self, arguments)
        try:
            model = _model(self).model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolArgumentsError(f"Invalid arguments for {self.name}: {problems}") from None
        return model.model_dump(mode="json")

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> str:
        """Run the tool on validated arguments; the result as text for the model."""
        if self.json_schema is not None:
            return result_text(await self.fn(dict(arguments), ctx))
        kwargs = dict(arguments)
        if self.context_param:
            kwargs[self.context_param] = ctx
        result = await self.fn(**kwargs)
        return result_text(result)


def _model(tool: Tool) -> type[BaseModel]:
    assert tool.args_model is not None  # __post_init__: one of the two is set
    return tool.args_model


def _check_json(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    validator = tool.extra.get("validator")
    if validator is None:
        # Imported here: only tools with a raw schema need it, and start-up time counts.
        from jsonschema.validators import Draft202012Validator, validator_for

        schema = tool.json_schema or {}
        validator = validator_for(schema, default=Draft202012Validator)(schema)
        tool.extra["validator"] = validator
    errors = sorted(validator.iter_errors(arguments), key=lambda e: [str(p) for p in e.path])
    if errors:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.path) or '(arguments)'}: {err.message}"
            for err in errors
        )
        raise ToolArgumentsError(f"Invalid arguments for {tool.name}: {problems}")
    return dict(arguments)


def result_text(result: Any) -> str:
    """Tool results reach the model as text: strings as they are, the rest as JSON."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, ensure_ascii=False)


def make_tool(
    fn: ToolFunction,
    *,
    risk: Risk,
    idempotent: bool = False,
    name: str | None = None,
    description: str | None = None,
    control: bool = False,
    outbound: tuple[str, ...] = (),
    recipients: tuple[str, ...] = (),
) -> Tool:
    """Build a :class:`Tool` from an async function's signature and docstring."""
    if not inspect.iscoroutinefunction(fn):
        raise ConfigError(f"Tool {fn.__name__} must be an async function")
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(pname, Any)
        if annotation is ToolContext:
            context_param = pname
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigError(f"Tool {fn.__name__}: *args/**kwargs cannot be described to a model")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, default)
    tool_name = name or fn.__name__
    args_model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid", strict=False),
        **fields,
    )
    doc = inspect.getdoc(fn) or ""
    return Tool(
        name=tool_name,
        description=description or doc.split("\n\n")[0].strip() or tool_name,
        fn=fn,
        risk=Risk(risk),
        idempotent=idempotent,
        args_model=args_model,
        context_param=context_param,
        control=control,
        outbound=tuple(outbound),
        recipients=tuple(recipients),
    )


def tool(
    *,
    risk: Risk | str = Risk.READ_ONLY,
    idempotent: bool = False,
    name: str | None = None,
    description: str | None = None,
    outbound: tuple[str, ...] = (),
) -> Callable[[ToolFunction], Tool]:
    """Decorator form of :func:`make_tool`."""

    def wrap(fn: ToolFunction) -> Tool:
        return make_tool(
            fn,
            risk=Risk(risk),
            idempotent=idempotent,
            name=name,
            description=description,
            outbound=outbound,
        )

    return wrap
