"""Confidential inference in the core: node keys and attestation, locks, the ciphertext relay.

The core never holds a key that decrypts: it checks envelopes' shapes, the nodes' key registrations
and usage signatures (atoma_proxy.confidential), and meters through the same Meter as plain requests.
"""
