"""The AccountAdminService servicer: every RPC first passes the admin gate (`accounts.admin_token`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import grpc

from atoma_proxy.core.accounts import translate, validation
from atoma_proxy.core.accounts.billing import Billing
from atoma_proxy.core.accounts.callers import AdminGate
from atoma_proxy.core.errors import InvalidRequest
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2 as pb
from atoma_proxy.generated.atoma.accounts.v1 import account_admin_service_pb2_grpc as pb_grpc
from atoma_proxy.generated.atoma.accounts.v1 import resources_pb2 as resources

__all__ = ["AccountAdminService"]

Context: TypeAlias = grpc.aio.ServicerContext

_WIDTHS = {
    pb.USAGE_BUCKET_WIDTH_UNSPECIFIED: timedelta(hours=1),
    pb.USAGE_BUCKET_WIDTH_HOUR: timedelta(hours=1),
    pb.USAGE_BUCKET_WIDTH_DAY: timedelta(days=1),
}


class AccountAdminService(pb_grpc.AccountAdminServiceServicer):
    def __init__(self, gate: AdminGate, billing: Billing) -> None:
        self._gate = gate
        self._billing = billing

    async def CreditBalance(self, request: pb.CreditBalanceRequest, context: Context) -> pb.CreditBalanceResponse:
        self._gate.check(context.invocation_metadata())
        result = await self._billing.credit(
            request.user_id,
            validation.check_credit(request.amount_micro_usd),
            validation.check_idempotency_key(request.idempotency_key),
            validation.check_text(request.note, "note", max_length=500),
        )
        return pb.CreditBalanceResponse(applied=result.applied, balance=translate.balance(result.balance))

    async def SetUserModelPrice(
        self, request: pb.SetUserModelPriceRequest, context: Context
    ) -> pb.SetUserModelPriceResponse:
        self._gate.check(context.invocation_metadata())
        model = validation.check_text(validation.check_required(request.model, "model"), "model")
        input_price = validation.check_price(request.input_price_per_million, "input_price_per_million")
        output_price = validation.check_price(request.output_price_per_million, "output_price_per_million")
        await self._billing.set_price(request.user_id, model, input_price, output_price)
        return pb.SetUserModelPriceResponse(
            price=resources.ModelPrice(
                model=model, input_price_per_million=input_price, output_price_per_million=output_price
            )
        )

    async def ListUserModelPrices(
        self, request: pb.ListUserModelPricesRequest, context: Context
    ) -> pb.ListUserModelPricesResponse:
        self._gate.check(context.invocation_metadata())
        prices = await self._billing.prices(request.user_id)
        return pb.ListUserModelPricesResponse(prices=[translate.model_price(price) for price in prices])

    async def GetUserBalance(self, request: pb.GetUserBalanceRequest, context: Context) -> pb.GetUserBalanceResponse:
        self._gate.check(context.invocation_metadata())
        return pb.GetUserBalanceResponse(balance=translate.balance(await self._billing.user_balance(request.user_id)))

    async def GetUsageStats(self, request: pb.GetUsageStatsRequest, context: Context) -> pb.GetUsageStatsResponse:
        self._gate.check(context.invocation_metadata())
        width = _WIDTHS.get(request.bucket_width)
        if width is None:
            raise InvalidRequest("`bucket_width` must be HOUR or DAY.", param="bucket_width")
        count = validation.check_range(request.bucket_count, "bucket_count", default=24, maximum=1000)
        top = validation.check_range(request.top_users_limit, "top_users_limit", default=10, maximum=100)
        stats = await self._billing.usage_stats(datetime.now(UTC), width, count, top)
        return translate.usage_stats(stats)
