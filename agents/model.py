"""The model gateway: one call to a model, through litellm, as a typed reply.

litellm is imported on first use (it takes seconds), never at module import, so the CLI's
``--help`` stays fast. Errors are classified here: transient ones (timeouts, 429, 5xx,
connection trouble) are retried by the caller with backoff; the rest become a sentence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.errors import ConfigError, ModelError


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: str


@dataclass
class ModelReply:
    """What one model call returned, with its usage."""

    content: str | None
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    retry_after: float | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message to append to a transcript."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in self.tool_calls
            ]
        return msg


class ModelClient(Protocol):
    """Anything that can complete a chat. The engine depends on this, not on litellm."""

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        timeout_s: float = 120.0,
    ) -> ModelReply:
        """One completion; raises :class:`ModelError` (``transient`` set when worth a retry)."""
        ...


def _litellm() -> Any:
    # The bundled price map is used unless the operator opts into fetching a fresh one, so an
    # offline machine never stalls on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    return litellm


class LiteLLMClient:
    """:class:`ModelClient` over ``litellm.acompletion`` (any provider litellm supports)."""

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        timeout_s: float = 120.0,
    ) -> ModelReply:
        """One completion through litellm, with no retries of its own (the engine retries)."""
        litellm = _litellm()
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "timeout": timeout_s,
            "num_retries": 0,
        }
        if tools:
            kwargs["tools"] = tools
        if response_format:
            kwargs["response_format"] = response_format
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise classify(exc, model) from None
        return _to_reply(litellm, response)


def _to_reply(litellm: Any, response: Any) -> ModelReply:
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError) as exc:
        raise ModelError("The model returned no message.", transient=True) from exc
    calls = []
    for call in getattr(message, "tool_calls", None) or []:
        args = call.function.arguments
        if not isinstance(args, str):
            args = json.dumps(args)
        calls.append(ToolCallRequest(id=call.id, name=call.function.name or "", arguments=args))
    usage = getattr(response, "usage", None)
    cost = 0.0
    hidden = getattr(response, "_hidden_params", None) or {}
    if hidden.get("response_cost") is not None:
        cost = float(hidden["response_cost"])
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # unknown model price: usage is still counted in tokens
            cost = 0.0
    return ModelReply(
        content=message.content,
        tool_calls=calls,
        tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
        tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=cost,
    )


_TRANSIENT = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "BadGatewayError",
)


def classify(exc: BaseException, model: str) -> ModelError:
    """Turn a provider exception into a :class:`ModelError` a user can act on."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    detail = (
        str(getattr(exc, "message", "") or exc).strip().splitlines()[0][:300] if str(exc) else ""
    )
    if name == "AuthenticationError" or status == 401:
        return ModelError(
            f"The provider refused the credentials for {model}: check its API key "
            "(e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)."
        )
    if name == "NotFoundError" or status == 404:
        return ModelError(f"The provider does not know the model {model!r}: check BATON_MODEL.")
    if name == "ContextWindowExceededError":
        return ModelError(f"The conversation is too long for {model}.")
    if name in _TRANSIENT or (isinstance(status, int) and (status == 429 or status >= 500)):
        err = ModelError(f"{model} is unavailable for now ({name}: {detail})", transient=True)
        err.retry_after = _retry_after(exc)  # type: ignore[attr-defined]
        return err
    if name in ("BadRequestError", "UnprocessableEntityError") or status == 400:
        return ModelError(f"The provider rejected the request to {model}: {detail}")
    # Anything else (a garbled response, a broken connection mid-body) is worth a retry.
    return ModelError(f"{model} failed ({name}: {detail})", transient=True)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def check_credentials(models: set[str]) -> None:
    """Fail at start, with the variable to set, if a model's provider key is missing."""
    litellm = _litellm()
    for model in sorted(models):
        try:
            result = litellm.validate_environment(model=model)
        except Exception:  # a provider litellm cannot check: let the first call tell
            continue
        missing = result.get("missing_keys") or []
        if missing:
            raise ConfigError(
                f"Model {model} needs {', '.join(missing)} in the environment "
                "(or choose another model with BATON_MODEL)."
            )
