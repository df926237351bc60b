"""A resource server written with the official Python x402 SDK (PyPI `x402`), using Switchyard as its facilitator.

Usage: X402_PAYER_KEY=<payer private key> python x402-python-facilitator.py <facilitator url> <api key> <account>
       <network> <asset> <atomic amount>

What the SDK's middlewares do for a paid request, without a web framework: x402ResourceServer with an
HTTPFacilitatorClient reads the facilitator's /supported, builds the requirements from the kind it lists (paying its
payTo, in its asset, signed for its token's EIP-712 name and version),
the SDK's client signs the payment those requirements ask for, and the server verifies then settles it through the
facilitator; then settles the same payment once more, as a retried request would. Every answer is parsed by the
SDK's own models. Prints one JSON object: the supported kind, the verify and both settle answers as the SDK read
them.
"""

import asyncio
import json
import os
import sys

from eth_account import Account
from x402 import x402Client, x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.facilitator_client_base import CreateHeadersAuthProvider
from x402.mechanisms.evm.exact import ExactEvmServerScheme, register_exact_evm_client
from x402.schemas import AssetAmount, ResourceConfig, ResourceInfo


def dump(model) -> dict:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main(url, key, account, network, asset, amount) -> None:
    paying = {"Authorization": f"Bearer {key}", "Switchyard-Account": account}
    facilitator = HTTPFacilitatorClient(
        FacilitatorConfig(
            url=url,
            auth_provider=CreateHeadersAuthProvider(
                lambda: {"verify": paying, "settle": paying, "supported": {"Authorization": f"Bearer {key}"}}
            ),
        )
    )
    supported = facilitator.get_supported()
    kind = next(k for k in supported.kinds if k.network == network and k.scheme == "exact")
    server = x402ResourceServer(facilitator).register(network, ExactEvmServerScheme())
    server.initialize()
    requirements = server.build_payment_requirements(
        ResourceConfig(
            scheme="exact",
            pay_to=kind.extra["payTo"],
            price=AssetAmount(
                amount=amount,
                asset=kind.extra["asset"],
                extra={"name": kind.extra["name"], "version": kind.extra["version"]},
            ),
            network=network,
            max_timeout_seconds=120,
        )
    )
    required = await server.create_payment_required_response(
        requirements, ResourceInfo(url="http://127.0.0.1/report", description="a report", mime_type="application/json")
    )

    client = x402Client()
    client.set_spend_controls(
        {"allowed_assets": [{"network": network, "asset": asset, "max_amount_per_payment": amount}]}
    )
    register_exact_evm_client(client, Account.from_key(os.environ["X402_PAYER_KEY"]), networks=network)
    payload = await client.create_payment_payload(required)

    verified = await server.verify_payment(payload, requirements[0])
    settled = await server.settle_payment(payload, requirements[0])
    settled_again = await server.settle_payment(payload, requirements[0])
    print(
        json.dumps(
            {
                "kind": dump(kind),
                "nonce": payload.payload["authorization"]["nonce"],
                "verified": dump(verified),
                "settled": dump(settled),
                "settled_again": dump(settled_again),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
