"""POST /v1/embeddings: deterministic unit-norm vectors.

A vector is drawn from a Gaussian PRNG seeded by (model, input), normalised to length 1 and
rounded to float32, so the "float" and "base64" (little-endian float32) encodings carry exactly
the same numbers and the same input always embeds to the same vector.
"""

from __future__ import annotations

import base64
import math
import random
import struct
from typing import Any

import orjson

from atoma_proxy.nodesim.asgi import RequestError
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.jobs import Job
from atoma_proxy.nodesim.parsing import optional_int, require_model, split_inputs
from atoma_proxy.nodesim.text import generation_seed
from atoma_proxy.sim_words import prompt_tokens

__all__ = ["MAX_DIMENSIONS", "EmbeddingJob", "embed", "encode_base64", "parse_embedding"]

MAX_DIMENSIONS = 8192


def embed(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The unit-norm float32-exact vector of one input."""
    rng = random.Random(generation_seed("embedding", model, item))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(x / norm for x in vector))
    return list(struct.unpack(f"<{dimensions}f", packed))


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class EmbeddingJob(Job):
    def __init__(self, model: str, inputs: list[str | list[int]], dimensions: int, as_base64: bool) -> None:
        self.model = model
        self.inputs = inputs
        self.dimensions = dimensions
        self.as_base64 = as_base64
        self.prompt_tokens = sum(prompt_tokens(item) for item in inputs)

    def render(self) -> bytes:
        data = []
        for index, item in enumerate(self.inputs):
            vector = embed(self.model, item, self.dimensions)
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": encode_base64(vector) if self.as_base64 else vector,
                }
            )
        usage = {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
        return orjson.dumps({"object": "list", "data": data, "model": self.model, "usage": usage})


def parse_embedding(payload: dict[str, Any], config: SimConfig) -> EmbeddingJob:
    model = require_model(payload, config.embedding_models)
    if "input" not in payload:
        raise RequestError(400, "you must provide an input parameter", param="input")
    inputs = split_inputs(payload["input"], "input")
    dimensions = optional_int(payload, "dimensions", config.embedding_dimensions, 1, MAX_DIMENSIONS)
    assert dimensions is not None
    encoding = payload.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise RequestError(400, "'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    return EmbeddingJob(model, inputs, dimensions, encoding == "base64")
