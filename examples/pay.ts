// Pays a paywalled URL with the payer SDK (switchyard/pay): wrapFetch answers the 402 with an x402 payment in
// TestUSD on the chain at RPC_URL, signed by PAYER_KEY (default: Hardhat development account 3, the payer `npm start`
// funds), at most MAX_UNITS of the token (default 1 TestUSD). Prints the status, the body, the decoded
// PAYMENT-RESPONSE, and the payer's balance before and after.
//
//   RPC_URL=http://127.0.0.1:8545 TOKEN=0x… npx node examples/pay.ts http://localhost:3000/demo/paid/report
// (`npx node`: the project's Node 24, which runs TypeScript as it is; a shell's own node may be older.)

import { PayError, type PaymentRecord, readX402Receipt, viemPayer, wrapFetch } from "switchyard/pay";
import { createPublicClient, erc20Abi, type Hex, http, isAddress } from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";

const hardhatMnemonic = "test test test test test test test test test test test junk";

const url = process.argv[2];
const token = process.env.TOKEN;
if (url === undefined || token === undefined || !isAddress(token)) {
  console.error(
    "usage: RPC_URL=<json-rpc url> TOKEN=<token address> [PAYER_KEY=0x…] npx node examples/pay.ts <url>",
  );
  process.exit(2);
}
const rpc = createPublicClient({ transport: http(process.env.RPC_URL ?? "http://127.0.0.1:8545") });
const account =
  process.env.PAYER_KEY === undefined
    ? mnemonicToAccount(hardhatMnemonic, { addressIndex: 3 })
    : privateKeyToAccount(process.env.PAYER_KEY as Hex);
const chainId = await rpc.getChainId();
const balance = () =>
  rpc.readContract({ address: token, abi: erc20Abi, functionName: "balanceOf", args: [account.address] });

const before = await balance();
const payments: PaymentRecord[] = [];
const paidFetch = wrapFetch(fetch, {
  accept: [
    {
      scheme: "x402",
      network: `eip155:${chainId}`,
      asset: token,
      amountMax: BigInt(process.env.MAX_UNITS ?? "1000000"),
    },
  ],
  evm: viemPayer(account),
  onPayment: (payment) => payments.push(payment),
});
try {
  const response = await paidFetch(url);
  console.log(`status: ${response.status}`);
  console.log(`body: ${await response.text()}`);
  console.log(`PAYMENT-RESPONSE: ${JSON.stringify(readX402Receipt(response.headers))}`);
  for (const payment of payments)
    console.log(
      `paid: ${payment.amount} units of ${payment.asset} (x402 v${payment.version}) by ${account.address}`,
    );
  console.log(`payer's balance: ${before} before, ${await balance()} after`);
} catch (error) {
  if (!(error instanceof PayError)) throw error;
  console.error(`not paid: ${error.code}: ${error.message}`);
  process.exit(1);
}
