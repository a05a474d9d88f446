"""Validation of chat and completions request bodies into `TextJob`s, with OpenAI's error shapes.

Only what shapes the reply is checked (model, messages/prompt, n, the max-token caps, stream
flags); every other field is accepted and ignored, as a tolerant inference server would.

Reply length: a reply naturally has `reply_tokens` tokens ("stop"). A cap (`max_completion_tokens`,
else `max_tokens`) below that cuts it ("length"). vLLM's `ignore_eos: true` generates exactly the
cap, which benchmarks use to fix output length. A capped reply is a prefix of the uncapped one.
Misbehaviours (`SimConfig`): `overproduce_tokens` past the cap, a completions route that reads only
`max_tokens`, and usage omitted or replaced (`UsageFault`).
"""

from __future__ import annotations

from typing import Any

from atoma_proxy.nodesim.asgi import RequestError
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.jobs import TextJob, ToolCallJob, UsageFault
from atoma_proxy.nodesim.text import generate_pieces, generation_seed
from atoma_proxy.sim_words import chat_prompt_tokens, prompt_tokens

__all__ = [
    "MAX_CHOICES",
    "MAX_GENERATED_TOKENS",
    "MAX_REQUEST_TOKENS",
    "is_int",
    "optional_bool",
    "optional_int",
    "parse_chat",
    "parse_completion",
    "reply_length",
    "require_model",
    "split_inputs",
    "usage_fault",
]

MAX_CHOICES = 128
MAX_GENERATED_TOKENS = 131_072  # the simulated context length
MAX_REQUEST_TOKENS = 2_000_000  # generated tokens over all choices: keeps memory per request bounded


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_model(payload: dict[str, Any], models: list[str]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "you must provide a model parameter", param="model")
    if model not in models:
        raise RequestError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return model


def optional_int(payload: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return default
    if not is_int(value) or not low <= value <= high:
        raise RequestError(400, f"'{name}' must be an integer between {low} and {high}.", param=name)
    return value


def optional_bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be a boolean.", param=name)
    return value


def _stream_flags(payload: dict[str, Any]) -> tuple[bool, bool]:
    stream = optional_bool(payload, "stream")
    options = payload.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise RequestError(400, "'stream_options' must be an object.", param="stream_options")
    return stream, stream and optional_bool(options, "include_usage")


def reply_length(payload: dict[str, Any], config: SimConfig, *, completions: bool = False) -> tuple[int, str]:
    """(tokens per choice, finish_reason) under the rule in the module docstring."""
    cap_tokens = optional_int(payload, "max_tokens", None, 1, 2**31)
    cap_completion = optional_int(payload, "max_completion_tokens", None, 1, 2**31)
    cap = cap_completion if cap_completion is not None else cap_tokens
    if completions and config.completions_max_tokens_only:
        cap = cap_tokens
    natural = config.reply_tokens
    if cap is None:
        return min(natural, MAX_GENERATED_TOKENS), "stop"
    if config.overproduce_tokens:
        return min(cap + config.overproduce_tokens, MAX_GENERATED_TOKENS), "length"
    if optional_bool(payload, "ignore_eos") or cap < natural:
        return min(cap, MAX_GENERATED_TOKENS), "length"
    return natural, "stop"


def usage_fault(config: SimConfig) -> UsageFault | None:
    """How the node misreports usage, if it does (`omit_usage`, `fake_usage`)."""
    if config.omit_usage:
        return UsageFault(omit=True)
    return UsageFault(replace=config.fake_usage) if config.fake_usage else None


def _check_budget(choices: int, steps: int) -> None:
    if choices * steps > MAX_REQUEST_TOKENS:
        message = f"At most {MAX_REQUEST_TOKENS} generated tokens per request (n x max tokens)."
        raise RequestError(400, message, param="n")


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, f"'messages[{index}]' must be an object with a 'role'.", param=f"messages[{index}]")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise RequestError(
                400, f"'messages[{index}].content' must be a string or an array.", param=f"messages[{index}].content"
            )
    return messages


def parse_chat(payload: dict[str, Any], config: SimConfig) -> TextJob:
    model = require_model(payload, config.chat_models)
    messages = _check_messages(payload.get("messages"))
    n = optional_int(payload, "n", 1, 1, MAX_CHOICES)
    assert n is not None
    steps, finish_reason = reply_length(payload, config)
    _check_budget(n, steps)
    stream, include_usage = _stream_flags(payload)
    seed = payload.get("seed")
    choices = [generate_pieces(generation_seed(model, messages, seed, index), steps) for index in range(n)]
    job: dict[str, Any] = {
        "chat": True,
        "model": model,
        "prompt_tokens": chat_prompt_tokens(messages),
        "choices": choices,
        "finish_reason": finish_reason,
        "stream": stream,
        "include_usage": include_usage,
        "usage_fault": usage_fault(config),
    }
    function = _called_function(payload)
    if function is not None and n == 1 and steps > 0:
        return ToolCallJob(function=function, **job)
    return TextJob(**job)


def _called_function(payload: dict[str, Any]) -> str | None:
    """The function the reply calls: the one `tool_choice` names, or the first tool when it is "required"."""
    tools, choice = payload.get("tools"), payload.get("tool_choice")
    if not isinstance(tools, list) or not tools:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) and name else None
    if choice == "required":
        first = tools[0] if isinstance(tools[0], dict) else {}
        name = (first.get("function") or {}).get("name")
        return name if isinstance(name, str) and name else None
    return None


def split_inputs(value: Any, param: str) -> list[str | list[int]]:
    """OpenAI's input forms: a string, strings, one token array, or token arrays -> a list of inputs."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return value
        if all(is_int(item) and item >= 0 for item in value):
            return [value]
        if all(isinstance(item, list) and item and all(is_int(t) and t >= 0 for t in item) for item in value):
            return value
    raise RequestError(
        400,
        f"'{param}' must be a string, an array of strings, an array of tokens or an array of token arrays.",
        param=param,
    )


def parse_completion(payload: dict[str, Any], config: SimConfig) -> TextJob:
    model = require_model(payload, config.chat_models)
    if "prompt" not in payload:
        raise RequestError(400, "you must provide a prompt parameter", param="prompt")
    prompts = split_inputs(payload["prompt"], "prompt")
    n = optional_int(payload, "n", 1, 1, MAX_CHOICES)
    assert n is not None
    if len(prompts) * n > MAX_CHOICES:
        raise RequestError(400, f"At most {MAX_CHOICES} choices (prompts x n) per request.", param="n")
    steps, finish_reason = reply_length(payload, config, completions=True)
    _check_budget(len(prompts) * n, steps)
    stream, include_usage = _stream_flags(payload)
    seed = payload.get("seed")
    # Choice index = prompt index * n + i, as OpenAI numbers batched prompts.
    choices = [generate_pieces(generation_seed(model, prompt, seed, i), steps) for prompt in prompts for i in range(n)]
    return TextJob(
        chat=False,
        model=model,
        prompt_tokens=sum(prompt_tokens(prompt) for prompt in prompts),
        choices=choices,
        finish_reason=finish_reason,
        stream=stream,
        include_usage=include_usage,
        usage_fault=usage_fault(config),
    )
