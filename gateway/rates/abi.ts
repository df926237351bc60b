// The ABIs the rate sources read and write. `aggregatorV3Abi` is Chainlink's AggregatorV3Interface, so the
// Chainlink source reads any Chainlink data feed as well as our PriceFeed (contracts/PriceFeed.sol);
// `priceFeedOwnerAbi` is what only PriceFeed has. test/evm/rates.test.ts checks both against the compiled
// contract's ABI. (Not in adapters/evm/abi.generated.ts: gateway/ does not import adapters/.)

const roundOutputs = [
  { internalType: "uint80", name: "roundId", type: "uint80" },
  { internalType: "int256", name: "answer", type: "int256" },
  { internalType: "uint256", name: "startedAt", type: "uint256" },
  { internalType: "uint256", name: "updatedAt", type: "uint256" },
  { internalType: "uint80", name: "answeredInRound", type: "uint80" },
] as const;

export const aggregatorV3Abi = [
  {
    inputs: [],
    name: "decimals",
    outputs: [{ internalType: "uint8", name: "", type: "uint8" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "description",
    outputs: [{ internalType: "string", name: "", type: "string" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "version",
    outputs: [{ internalType: "uint256", name: "", type: "uint256" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [{ internalType: "uint80", name: "_roundId", type: "uint80" }],
    name: "getRoundData",
    outputs: roundOutputs,
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [],
    name: "latestRoundData",
    outputs: roundOutputs,
    stateMutability: "view",
    type: "function",
  },
] as const;

export const priceFeedOwnerAbi = [
  {
    inputs: [],
    name: "owner",
    outputs: [{ internalType: "address", name: "", type: "address" }],
    stateMutability: "view",
    type: "function",
  },
  {
    inputs: [{ internalType: "int256", name: "answer", type: "int256" }],
    name: "updateAnswer",
    outputs: [],
    stateMutability: "nonpayable",
    type: "function",
  },
  {
    anonymous: false,
    inputs: [
      { indexed: true, internalType: "int256", name: "current", type: "int256" },
      { indexed: true, internalType: "uint256", name: "roundId", type: "uint256" },
      { indexed: false, internalType: "uint256", name: "updatedAt", type: "uint256" },
    ],
    name: "AnswerUpdated",
    type: "event",
  },
  {
    inputs: [
      { internalType: "address", name: "caller", type: "address" },
      { internalType: "address", name: "owner", type: "address" },
    ],
    name: "PriceFeedUnauthorized",
    type: "error",
  },
  {
    inputs: [{ internalType: "int256", name: "answer", type: "int256" }],
    name: "PriceFeedNonPositiveAnswer",
    type: "error",
  },
] as const;

/** Everything the gateway calls on a PriceFeed. */
export const priceFeedAbi = [...aggregatorV3Abi, ...priceFeedOwnerAbi] as const;
