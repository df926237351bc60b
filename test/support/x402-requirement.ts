// One x402 v2 `exact` requirement as a server would send it: 0.01 USDC on Base Sepolia (the token's address and
// EIP-712 domain as Circle deployed it), to a Hardhat account. For the payer SDK's unit tests, which only sign.
export const usdcRequirement = {
  scheme: "exact",
  network: "eip155:84532",
  amount: "10000",
  asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
  payTo: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  maxTimeoutSeconds: 60,
  extra: { name: "USDC", version: "2" },
};
