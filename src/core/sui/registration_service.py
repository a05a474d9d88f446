"""The NodeRegistrationService servicer: signed node registrations (see registration.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.core.sui.registration import NodeRegistration, register_node
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2 as pb
from atoma_proxy.generated.atoma.routing.v1 import node_registration_service_pb2_grpc as pb_grpc

__all__ = ["NodeRegistrationService"]


class NodeRegistrationService(pb_grpc.NodeRegistrationServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        on_change: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._on_change = on_change
        self._clock = clock

    async def RegisterNode(
        self, request: pb.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterNodeResponse:
        if not request.HasField("data"):
            raise InvalidRequest("`data` is required.", param="data")
        if not request.signature:
            raise InvalidRequest("`signature` is required.", param="signature")
        data = request.data
        registration = NodeRegistration(data.node_small_id, data.public_address, data.country, data.timestamp)
        async with self._sessions() as session, session.begin():
            address = await register_node(session, registration, request.signature, int(self._clock()))
        if self._on_change is not None:
            await self._on_change()
        return pb.RegisterNodeResponse(data=data, sui_address=address)
