"""Checks of inference requests the core makes before choosing a node.

The facade checks JSON types; these are the semantic rules every caller (REST or gRPC) must
meet, each failure naming the OpenAI parameter at fault.
"""

from __future__ import annotations

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.limits import MAX_COMPLETION_CHOICES, MAX_OUTPUT_TOKENS
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb

__all__ = [
    "CHAT_ROLES",
    "MAX_MODEL_LENGTH",
    "check_chat_completion",
    "check_completion",
    "check_embeddings",
    "check_generate_images",
    "require_model",
]

_MAX_N = MAX_COMPLETION_CHOICES
# Model ids are short names (`meta-llama/Llama-3.3-70B-Instruct`); longer is a mistake or a probe.
MAX_MODEL_LENGTH = 256
# OpenAI's chat roles (`function` is its deprecated predecessor of `tool`); any other role is a 400, as at OpenAI.
CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def require_model(model: str) -> None:
    if not model:
        raise InvalidRequest("You must provide a model parameter.", param="model")
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidRequest(f"`model` is too long: at most {MAX_MODEL_LENGTH} characters.", param="model")


def _check_positive(request, field: str) -> None:  # type: ignore[no-untyped-def]
    if request.HasField(field) and getattr(request, field) < 1:
        raise InvalidRequest(f"`{field}` must be at least 1.", param=field)


def _check_output_cap(request, field: str) -> None:  # type: ignore[no-untyped-def]
    """An output cap is 1 to MAX_OUTPUT_TOKENS per choice (README "Limits")."""
    if request.HasField(field) and not 1 <= getattr(request, field) <= MAX_OUTPUT_TOKENS:
        raise InvalidRequest(f"`{field}` must be between 1 and {MAX_OUTPUT_TOKENS}.", param=field)


def _check_sampling(request) -> None:  # type: ignore[no-untyped-def]
    _check_output_cap(request, "max_tokens")
    if request.HasField("n") and not 1 <= request.n <= _MAX_N:
        raise InvalidRequest(f"`n` must be between 1 and {_MAX_N}.", param="n")
    if request.HasField("temperature") and not 0 <= request.temperature <= 2:
        raise InvalidRequest("`temperature` must be between 0 and 2.", param="temperature")
    if request.HasField("top_p") and not 0 <= request.top_p <= 1:
        raise InvalidRequest("`top_p` must be between 0 and 1.", param="top_p")
    if len(request.stop) > 4:
        raise InvalidRequest("`stop` takes at most 4 sequences.", param="stop")


def check_chat_completion(request: pb.ChatCompletionRequest) -> None:
    require_model(request.model)
    if not request.messages:
        raise InvalidRequest("`messages` must contain at least one message.", param="messages")
    for index, message in enumerate(request.messages):
        if not message.role:
            raise InvalidRequest("Every message needs a `role`.", param=f"messages[{index}].role")
        if message.role not in CHAT_ROLES:
            raise InvalidRequest(
                f"Invalid value: '{message.role}'. Supported values are: {', '.join(sorted(CHAT_ROLES))}.",
                param=f"messages[{index}].role",
            )
    _check_sampling(request)
    _check_output_cap(request, "max_completion_tokens")


def check_completion(request: pb.CompletionRequest) -> None:
    require_model(request.model)
    if not request.prompt and not request.prompt_tokens:
        raise InvalidRequest("`prompt` must not be empty.", param="prompt")
    _check_sampling(request)


def check_embeddings(request: pb.EmbeddingsRequest) -> None:
    require_model(request.model)
    if not request.input and not request.input_tokens:
        raise InvalidRequest("`input` must not be empty.", param="input")
    if request.encoding_format not in ("", "float", "base64"):
        raise InvalidRequest("`encoding_format` must be `float` or `base64`.", param="encoding_format")
    _check_positive(request, "dimensions")


def check_generate_images(request: pb.GenerateImagesRequest) -> None:
    require_model(request.model)
    if not request.prompt:
        raise InvalidRequest("`prompt` must not be empty.", param="prompt")
    if request.HasField("n") and not 1 <= request.n <= 10:
        raise InvalidRequest("`n` must be between 1 and 10.", param="n")
    if request.response_format not in ("", "url", "b64_json"):
        raise InvalidRequest("`response_format` must be `url` or `b64_json`.", param="response_format")
    if request.size:
        width, x, height = request.size.partition("x")
        if not (x and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            raise InvalidRequest("`size` must look like `1024x1024`.", param="size")
