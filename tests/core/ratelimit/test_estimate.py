"""Token estimates for admission: prompt text at 4 characters a token, plus the completion budget."""

from __future__ import annotations

from atoma_proxy.core.ratelimit import estimate
from atoma_proxy.generated.atoma.routing.v1 import chat_pb2, common_pb2
from atoma_proxy.generated.atoma.routing.v1 import routing_service_pb2 as pb


def test_chat_counts_text_parts_and_every_choice() -> None:
    parts = chat_pb2.ChatContentParts(parts=[chat_pb2.ChatContentPart(type="text", text="x" * 7)])
    request = pb.ChatCompletionRequest(
        model="m",
        messages=[chat_pb2.ChatMessage(role="user", text="y" * 10), chat_pb2.ChatMessage(role="user", parts=parts)],
        max_tokens=1000,
        max_completion_tokens=50,  # wins over the deprecated max_tokens
        n=3,
    )
    assert estimate.chat_completion_tokens(request) == 5 + 3 * 50  # ceil(17 / 4) + n x budget


def test_chat_without_a_budget_assumes_the_default() -> None:
    request = pb.ChatCompletionRequest(model="m", messages=[chat_pb2.ChatMessage(role="user", text="abcd")])
    assert estimate.chat_completion_tokens(request) == 1 + estimate.DEFAULT_CHAT_COMPLETION_TOKENS


def test_completion_counts_token_ids_and_defaults_to_16() -> None:
    request = pb.CompletionRequest(model="m", prompt=["abcdefgh"], prompt_tokens=[common_pb2.TokenIds(ids=[1, 2, 3])])
    assert estimate.completion_tokens(request) == 2 + 3 + 16


def test_embeddings_and_images_count_their_input() -> None:
    embeddings = pb.EmbeddingsRequest(model="m", input=["abcde", "f"], input_tokens=[common_pb2.TokenIds(ids=[1, 2])])
    assert estimate.embeddings_tokens(embeddings) == 2 + 2
    assert estimate.image_tokens(pb.GenerateImagesRequest(model="m", prompt="a cat")) == 2
