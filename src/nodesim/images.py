"""POST /v1/images/generations and the image files its URLs point to.

Images are tiny valid PNGs (8x8, one colour derived from the prompt), whatever `size` says: the
point is the response shape and a URL that really serves a PNG, not pixels. The colour is part
of the image id (`<32 hex>-<rrggbb>.png`), so GET /sim/images/<id> needs no stored state.
"""

from __future__ import annotations

import base64
import functools
import re
import struct
import time
import uuid
import zlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from atoma_proxy.nodesim.asgi import RequestError
from atoma_proxy.nodesim.config import SimConfig
from atoma_proxy.nodesim.jobs import Job
from atoma_proxy.nodesim.parsing import optional_int, require_model
from atoma_proxy.nodesim.text import generation_seed
from atoma_proxy.sim_words import count_tokens

__all__ = ["IMAGE_SIDE", "MAX_IMAGES", "ImageJob", "parse_image", "png_bytes", "serve_image"]

IMAGE_SIDE = 8
MAX_IMAGES = 10
_SIZE_RE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
_IMAGE_NAME_RE = re.compile(r"^[0-9a-f]{32}-([0-9a-f]{6})\.png$")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=1024)
def png_bytes(rgb: bytes) -> bytes:
    """An IMAGE_SIDE x IMAGE_SIDE truecolour PNG filled with `rgb` (3 bytes)."""
    header = struct.pack(">IIBBBBB", IMAGE_SIDE, IMAGE_SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    rows = b"".join(b"\x00" + rgb * IMAGE_SIDE for _ in range(IMAGE_SIDE))  # filter type 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


class ImageJob(Job):
    def __init__(self, model: str, prompt: str, n: int, as_b64: bool, base_url: str) -> None:
        self.model = model
        self.prompt = prompt
        self.n = n
        self.as_b64 = as_b64
        self.base_url = base_url
        self.prompt_tokens = count_tokens(prompt)

    def render(self) -> bytes:
        data: list[dict[str, str]] = []
        for index in range(self.n):
            rgb = generation_seed("image", self.model, self.prompt, index).to_bytes(8, "little")[:3]
            if self.as_b64:
                data.append({"b64_json": base64.b64encode(png_bytes(rgb)).decode("ascii")})
            else:
                data.append({"url": f"{self.base_url}/sim/images/{uuid.uuid4().hex}-{rgb.hex()}.png"})
        return orjson.dumps({"created": int(time.time()), "data": data})


def parse_image(payload: dict[str, Any], config: SimConfig, base_url: str) -> ImageJob:
    model = require_model(payload, config.image_models)
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RequestError(400, "'prompt' must be a non-empty string.", param="prompt")
    n = optional_int(payload, "n", 1, 1, MAX_IMAGES)
    assert n is not None
    size = payload.get("size")
    if size is not None and (not isinstance(size, str) or not _SIZE_RE.match(size)):
        raise RequestError(400, "'size' must look like '1024x1024' (WIDTHxHEIGHT).", param="size")
    response_format = payload.get("response_format")
    if response_format not in (None, "url", "b64_json"):
        raise RequestError(400, "'response_format' must be 'url' or 'b64_json'.", param="response_format")
    return ImageJob(model, prompt, n, response_format == "b64_json", base_url)


async def serve_image(request: Request) -> Response:
    """GET /sim/images/{name}: the PNG a generated URL names."""
    match = _IMAGE_NAME_RE.match(request.path_params["name"])
    if match is None:
        return Response(
            b'{"error":{"message":"no such image","type":"invalid_request_error"}}', 404, media_type="application/json"
        )
    return Response(png_bytes(bytes.fromhex(match.group(1))), media_type="image/png")
