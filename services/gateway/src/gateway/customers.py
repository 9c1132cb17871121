"""`/api/v1/customers/{id}/avatar/`: a stable URL, so list pages presign nothing."""

from typing import Annotated

from fastapi import Path
from fastapi.responses import RedirectResponse
from sqlalchemy import exists, select

from common.models import Customer, Deal
from gateway.deals.queries import may_see
from gateway.deals.schemas import EXAMPLE_CUSTOMER_ID
from gateway.deps import S3, CurrentUser, SessionDep, SettingsDep
from gateway.docs import errors
from gateway.inputs import parse_id
from gateway.problems import not_found
from gateway.routing import Router

router = Router(tags=["customers"])
PRESIGN_SECONDS = 3600


@router.get(
    "/api/v1/customers/{customer_id}/avatar/",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the stored picture or the upstream's URL."}, **errors(404)},
    summary="Redirect to the customer's avatar",
)
async def get_customer_avatar(
    customer_id: Annotated[str, Path(examples=[EXAMPLE_CUSTOMER_ID])],
    session: SessionDep,
    s3: S3,
    settings: SettingsDep,
    user: CurrentUser,
) -> RedirectResponse:
    """The presigned S3 URL once the avatar worker stored it, else the original URL."""
    visible_deal = exists().where(
        Deal.customer_id == Customer.id, Deal.synced_at.is_not(None), may_see(user)
    )
    customer = await session.scalar(
        select(Customer).where(Customer.id == parse_id(customer_id, "customer"), visible_deal)
    )
    if customer is None:
        raise not_found("customer")
    if customer.avatar_key:
        url = await s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": settings.s3_bucket, "Key": customer.avatar_key},
            ExpiresIn=PRESIGN_SECONDS,
        )
        return RedirectResponse(url, status_code=302)
    if customer.avatar_url:
        return RedirectResponse(customer.avatar_url, status_code=302)
    raise not_found("avatar")
