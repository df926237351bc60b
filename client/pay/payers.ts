// The payers wrapFetch can pay with, each behind one small contract: an EVM payer signs EIP-712 typed data (a viem
// LocalAccount or WalletClient, an ethers v6 Signer), a Lightning payer pays a BOLT11 invoice and returns its
// preimage (a WebLN provider here, an LND node in lnd.ts). Failures of the wallet become PayerFailedError at
// wrapFetch's boundary.
import type { Signer as EthersSigner } from "ethers";
import type { Account, Chain, LocalAccount, Transport, WalletClient } from "viem";
import { PayerFailedError } from "./errors.ts";
import type { EvmPayer } from "./x402.ts";

type Hex = `0x${string}`;

export type { EvmPayer } from "./x402.ts";

/** A viem account that signs locally (privateKeyToAccount, mnemonicToAccount, …) or a WalletClient with an account. */
export function viemPayer(
  signer: LocalAccount | WalletClient<Transport, Chain | undefined, Account>,
): EvmPayer {
  if (isLocalAccount(signer)) {
    const account = signer;
    return {
      getAddress: async () => account.address,
      signTypedData: (typedData) => account.signTypedData(typedData),
    };
  }
  const client = signer as WalletClient<Transport, Chain | undefined, Account>;
  if (client.account === undefined)
    throw new PayerFailedError("The viem WalletClient has no account", {
      details: "create it with `account`, or pass the account itself",
    });
  return {
    getAddress: async () => client.account.address,
    signTypedData: (typedData) => client.signTypedData({ account: client.account, ...typedData }),
  };
}

function isLocalAccount(signer: object): signer is LocalAccount {
  return (signer as { type?: unknown }).type === "local";
}

/** An ethers v6 Signer (Wallet, JsonRpcSigner, …): `signTypedData(domain, types, value)`. */
export function ethersPayer(signer: EthersSigner): EvmPayer {
  return {
    getAddress: async () => (await signer.getAddress()) as Hex,
    signTypedData: async ({ domain, types, message }) => {
      const mutableTypes = Object.fromEntries(
        Object.entries(types).map(([name, fields]) => [name, fields.map((field) => ({ ...field }))]),
      );
      return (await signer.signTypedData(domain, mutableTypes, message)) as Hex;
    },
  };
}

/** What pays a BOLT11 invoice. */
export type LightningPayer = {
  /** The most routing fee a payment of `amountMsat` may cost: reserved in the budget with the amount. */
  feeMsatMax(amountMsat: bigint): bigint;
  /** Pays `invoice` (of `amountMsat`, fee at most `feeMsatMax`): its preimage (64 hex) and the fee it cost. */
  payInvoice(params: {
    invoice: string;
    amountMsat: bigint;
    feeMsatMax: bigint;
  }): Promise<{ preimage: string; feeMsat: bigint }>;
};

/** A WebLN provider (a browser wallet's `window.webln`, or any object with the same two methods). */
export type WebLnProvider = {
  enable?(): Promise<unknown>;
  sendPayment(paymentRequest: string): Promise<{ preimage: string }>;
};

/**
 * A WebLN provider as a Lightning payer. The wallet chooses and pays its own routing fee, which wrapFetch does not
 * see: only the invoice's amount is counted against the budget. `enable()` is called once, before the first payment.
 */
export function weblnPayer(provider: WebLnProvider): LightningPayer {
  let enabled: Promise<unknown> | null = null;
  return {
    feeMsatMax: () => 0n,
    async payInvoice({ invoice }) {
      enabled ??= provider.enable?.() ?? Promise.resolve();
      await enabled;
      // Once sendPayment resolves, the payment has left: whatever the wallet gave as its preimage goes to wrapFetch,
      // which checks it and keeps the payment counted against the budget when it is unusable.
      const { preimage } = await provider.sendPayment(invoice);
      return { preimage, feeMsat: 0n };
    },
  };
}
