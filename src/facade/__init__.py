"""The OpenAI REST facade over the routing core's gRPC API."""

from atoma_proxy.facade.app import create_app

__all__ = ["create_app"]
