"""The confidential path's errors: ProxyError subclasses with their own stable reasons.

    StaleNodeKey              FAILED_PRECONDITION  STALE_NODE_KEY         the node's key rotated since the lock
    LockNotFound              NOT_FOUND            LOCK_NOT_FOUND         unknown lock
    LockAlreadyUsed           FAILED_PRECONDITION  LOCK_ALREADY_USED      a lock serves one request
    LockExpired               FAILED_PRECONDITION  LOCK_EXPIRED
    LockOfAnotherUser         PERMISSION_DENIED    LOCK_OF_ANOTHER_USER
    LockMismatch              INVALID_ARGUMENT     LOCK_MISMATCH          model, endpoint or units differ from the lock
    TamperedRequest           INVALID_ARGUMENT     PLAINTEXT_HASH_MISMATCH, CONFIDENTIAL_DECRYPTION_FAILED,
                                                   INVALID_PLAINTEXT, INVALID_CONFIDENTIAL_REQUEST (node's verdict)
    NoConfidentialNode        UNAVAILABLE          NO_CONFIDENTIAL_NODE   no node with a valid key serves the model
    NodeAnswerInvalid         UNAVAILABLE          NODE_SIGNATURE_INVALID, NODE_STREAM_INVALID
    KeyRegistrationRefused    PERMISSION_DENIED    KEY_SIGNATURE_INVALID, ATTESTATION_INVALID, ROTATION_NOT_NEWER,
                                                   NOT_A_CONFIDENTIAL_NODE
A node that cannot be reached or fails is the plain path's NodeFailed (NODE_FAILED). None of these charges anything.
"""

from __future__ import annotations

import grpc

from atoma_proxy.core.errors import ProxyError
from atoma_proxy.wire.reasons import ErrorReason, reason_name

__all__ = [
    "KeyRegistrationRefused",
    "LockAlreadyUsed",
    "LockExpired",
    "LockMismatch",
    "LockNotFound",
    "LockOfAnotherUser",
    "NoConfidentialNode",
    "NodeAnswerInvalid",
    "StaleNodeKey",
    "TamperedRequest",
]


class StaleNodeKey(ProxyError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = reason_name(ErrorReason.ERROR_REASON_STALE_NODE_KEY)


class LockNotFound(ProxyError):
    code = grpc.StatusCode.NOT_FOUND
    reason = reason_name(ErrorReason.ERROR_REASON_LOCK_NOT_FOUND)


class LockAlreadyUsed(ProxyError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = reason_name(ErrorReason.ERROR_REASON_LOCK_ALREADY_USED)


class LockExpired(ProxyError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = reason_name(ErrorReason.ERROR_REASON_LOCK_EXPIRED)


class LockOfAnotherUser(ProxyError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = reason_name(ErrorReason.ERROR_REASON_LOCK_OF_ANOTHER_USER)


class LockMismatch(ProxyError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = reason_name(ErrorReason.ERROR_REASON_LOCK_MISMATCH)


class TamperedRequest(ProxyError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = reason_name(ErrorReason.ERROR_REASON_PLAINTEXT_HASH_MISMATCH)


class NoConfidentialNode(ProxyError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(ErrorReason.ERROR_REASON_NO_CONFIDENTIAL_NODE)


class NodeAnswerInvalid(ProxyError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = reason_name(ErrorReason.ERROR_REASON_NODE_SIGNATURE_INVALID)


class KeyRegistrationRefused(ProxyError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = reason_name(ErrorReason.ERROR_REASON_KEY_SIGNATURE_INVALID)
