"""Operating the proxy: Prometheus metrics, OpenTelemetry traces, structured logs (README "Operations").

Each concern is a module of its own; the request path calls a few functions of them at fixed points
(the servicer, the relay's node attempts, the facade's ASGI entry), nothing more.
"""
