"""Pays one x402-paywalled URL with the official Python client (PyPI `x402`), as a Python program would.

Usage: X402_PAYER_KEY=<payer private key> python x402-python-pay.py <url> <network> <asset> <max atomic amount>

Only the named asset on the named network is allowed, up to the cap (the client's spend controls refuse anything
else). Prints one JSON object on stdout: the final answer's status and body, the receipt it carried
(PAYMENT-RESPONSE, decoded), and the PAYMENT-SIGNATURE header the client sent, so the caller can replay it.
"""

import asyncio
import base64
import json
import os
import sys

import httpx
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402AsyncTransport
from x402.mechanisms.evm.exact.register import register_exact_evm_client


class Recording(httpx.AsyncHTTPTransport):
    """The network under the x402 client's transport, keeping each PAYMENT-SIGNATURE header sent."""

    def __init__(self) -> None:
        super().__init__()
        self.signatures: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        signature = request.headers.get("payment-signature")
        if signature is not None:
            self.signatures.append(signature)
        return await super().handle_async_request(request)


async def main(url: str, network: str, asset: str, cap: str) -> None:
    client = x402Client()
    client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": asset, "max_amount_per_payment": cap}]}
    )
    register_exact_evm_client(client, Account.from_key(os.environ["X402_PAYER_KEY"]), networks=network)
    network_transport = Recording()
    async with httpx.AsyncClient(transport=x402AsyncTransport(client, network_transport), timeout=60) as http:
        response = await http.get(url)
    sent = network_transport.signatures
    receipt = response.headers.get("payment-response")
    print(
        json.dumps(
            {
                "status": response.status_code,
                "body": response.text,
                "receipt": None if receipt is None else json.loads(base64.b64decode(receipt)),
                "signature": sent[-1] if sent else None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
