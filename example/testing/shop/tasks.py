"""A user's task module: an order is charged, then its receipt is mailed."""

from __future__ import annotations

import asyncio

import queuer
from queuer import Queuer

SENT: list[str] = []  # stands in for a mail server


@queuer.task()
async def charge(order_id: int, amount_cents: int) -> dict:
    if amount_cents <= 0:
        raise ValueError(f"order {order_id}: nothing to charge")
    await asyncio.sleep(0.01)  # the payment provider's API
    return {"order": order_id, "charged": amount_cents, "attempt": queuer.current_job().attempt}


@queuer.task()
def send_receipt(order_id: int, email: str) -> str:
    job = queuer.current_job()
    if job.is_cancelled():
        return "not sent"
    SENT.append(email)
    return f"receipt for order {order_id} sent to {email}"


def place_order(q: Queuer, order_id: int, email: str, amount_cents: int) -> None:
    """What the web handler calls when an order comes in."""
    q.add_job(charge, order_id, amount_cents)
    q.add_job(send_receipt, order_id, email=email)
