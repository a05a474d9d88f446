"""What the facade, the clients and the core agree on: metadata keys, error decoding, OpenAI <-> proto translation.

One module per concern; the facade (REST), the Python clients and the core import from here instead of
each keeping its own copy.
"""
