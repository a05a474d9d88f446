"""Request body schemas of the OpenAI routes, for the OpenAPI document only.

Bodies are parsed once by orjson and type-checked by the translation (`atoma_proxy.wire.openai_requests`)
while it builds the proto; these models never validate a request, they describe one (for /docs, client
generators and schemathesis). `extra="allow"`: every field OpenAI or a provider defines passes through.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

__all__ = ["REQUEST_MODELS", "component_schemas", "json_body"]

_MIN64, _MAX64 = -(2**63), 2**63 - 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageUrl(_Open):
    url: str
    detail: str | None = None


class ContentPart(_Open):
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(_Open):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class _Sampling(_Open):
    model: str
    max_tokens: int | None = Field(None, ge=_MIN64, le=_MAX64)
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = Field(None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=_MIN64, le=_MAX64)
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = Field(None, ge=_MIN64, le=_MAX64)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


TokenArray = list[Annotated[int, Field(ge=_MIN64, le=_MAX64)]]


class CompletionRequest(_Sampling):
    prompt: str | list[str] | TokenArray | list[TokenArray] | None = None


class EmbeddingsRequest(_Open):
    model: str
    input: str | list[str] | TokenArray | list[TokenArray]
    encoding_format: str | None = None
    dimensions: int | None = Field(None, ge=1, le=2**31 - 1)
    user: str | None = None


class GenerateImagesRequest(_Open):
    model: str
    prompt: str
    n: int | None = Field(None, ge=1, le=10)
    size: str | None = None
    quality: str | None = None
    response_format: str | None = None
    style: str | None = None
    user: str | None = None


class CreateResponseRequest(_Open):
    """OpenAI's Responses request; the core translates it (README "Responses API")."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletionRequest,
    CreateResponseRequest,
    CompletionRequest,
    EmbeddingsRequest,
    GenerateImagesRequest,
)
_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of this model (by reference)."""
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def component_schemas() -> dict[str, Any]:
    """The schemas `json_body` refers to, for `components.schemas` of the OpenAPI document."""
    _, top = models_json_schema([(model, "validation") for model in REQUEST_MODELS], ref_template=_REF)
    return top.get("$defs", {})
