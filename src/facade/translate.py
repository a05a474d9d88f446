"""The facade's side of the OpenAI -> proto translation: `atoma_proxy.wire.openai_requests`, its rejections as 400s.

The translation itself is shared with the Python clients (src/wire/); here each translator only
gets its `OpenAIRequestError` turned into OpenAI's 400 envelope (an ApiError), so the client
hears about a wrong type or a missing field without a round trip to the core.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from atoma_proxy.facade.errors import ApiError, invalid_request
from atoma_proxy.wire import openai_requests
from atoma_proxy.wire.json_values import OpenAIRequestError

__all__ = [
    "chat_completion_request",
    "completion_request",
    "embeddings_request",
    "generate_images_request",
]

T = TypeVar("T")


def _bad_request(error: OpenAIRequestError) -> ApiError:
    """OpenAI's 400 for a body the translation rejected."""
    return invalid_request(error.message, param=error.param, code=error.code)


def _answering_400(translate: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
    @wraps(translate)
    def checked(body: dict[str, Any]) -> T:
        try:
            return translate(body)
        except OpenAIRequestError as error:
            raise _bad_request(error) from None

    return checked


chat_completion_request = _answering_400(openai_requests.chat_completion_request)
completion_request = _answering_400(openai_requests.completion_request)
embeddings_request = _answering_400(openai_requests.embeddings_request)
generate_images_request = _answering_400(openai_requests.generate_images_request)
