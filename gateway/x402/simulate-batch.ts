// The paywall's "would the token take it?" for concurrent payments, one eth_call per batch instead of one
// simulation each: the call puts X402Simulator's runtime code (X402Simulator.sol beside this file, compiled with
// solc 0.8.30, optimizer 200 runs, evm cancun; test/evm/verify-batch.test.ts recompiles it and compares) at the hot
// wallet's address by a state override, and calls it; it calls transferWithAuthorization on the token for each
// payment from the hot wallet's address — the sender settlement uses — each against the same state (every probe
// reverts), and answers which would pass, each with its payer's balance in that state (the paywall weighs it against
// what the payer's other payments hold, claims-batch.ts). The balance's block is the latest one's asked just before
// the call: the call's state is that block's or a later one's (the node is taken to be one, or a set of nodes none
// of which answers from behind another), so that a payment spent in that block or after counts as not shown. Each probe has a gas cap, so a token call that burns gas fails its own
// payment only (test/evm/simulate-gas-cap.test.ts). A payment that would pass is answered at once; one that would
// not is said why by verify.ts's whyNotTaken (nonce used, balance, the window by the chain's clock: reads, never a
// reverting call), else — and for a batch the chain would not run (no state overrides, unreachable) — by
// checkChain, which simulates it alone.
import { BaseError, decodeFunctionResult, encodeFunctionData, type Hex, parseAbi } from "viem";
import { groupCommit } from "../../core/group-commit.ts";
import { eip3009Abi, type X402Chain } from "./chains.ts";
import type { Refused } from "./refusals.ts";
import {
  type BalanceReading,
  checkChain,
  type Eip3009Authorization,
  type Taken,
  transferArgs,
  vrsOf,
  whyNotTaken,
} from "./verify.ts";

/** X402Simulator's runtime code. */
export const simulatorRuntimeCode: Hex =
  "0x608060405234801561000f575f5ffd5b5060043610610034575f3560e01c8063053e94c614610038578063396d731414610062575b5f5ffd5b61004b61004636600461048d565b610077565b60405161005992919061050e565b60405180910390f35b610075610070366004610590565b6103bb565b005b6060808267ffffffffffffffff811115610093576100936105fd565b6040519080825280602002602001820160405280156100bc578160200160208202803683370190505b5091508267ffffffffffffffff8111156100d8576100d86105fd565b604051908082528060200260200182016040528015610101578160200160208202803683370190505b5090505f5b838110156103b2573063396d731462030d408888888681811061012b5761012b610611565b905060200281019061013d9190610625565b6040518563ffffffff1660e01b815260040161015b9392919061066f565b5f604051808303815f88803b158015610172575f5ffd5b5087f193505050508015610184575060015b610235573d8080156101b1576040519150601f19603f3d011682016040523d82523d5f602084013e6101b6565b606091505b50805160241480156101e0575063bc11eabb60e01b6101d4826106ae565b6001600160e01b031916145b80156102115750806023815181106101fa576101fa610611565b6020910101516001600160f81b031916600160f81b145b84838151811061022357610223610611565b91151560209283029190910190910152505b5f1982828151811061024957610249610611565b602002602001018181525050602485858381811061026957610269610611565b905060200281019061027b9190610625565b9050106103aa575f85858381811061029557610295610611565b90506020028101906102a79190610625565b6102b6916024916004916106ec565b6102bf91610713565b604080516001600160a01b0383811660248084019190915283518084039091018152604490920183526020820180516001600160e01b03166370a0823160e01b17905291519293505f9283928b16916175309161031c9190610731565b5f604051808303818686fa925050503d805f8114610355576040519150601f19603f3d011682016040523d82523d5f602084013e61035a565b606091505b509150915081801561036e57506020815110155b156103a657808060200190518101906103879190610747565b85858151811061039957610399610611565b6020026020010181815250505b5050505b600101610106565b50935093915050565b33301415806103d257506001600160a01b0383163b155b156103f75760405163bc11eabb60e01b81525f60048201526024015b60405180910390fd5b5f836001600160a01b0316838360405161041292919061075e565b5f604051808303815f865af19150503d805f811461044b576040519150601f19603f3d011682016040523d82523d5f602084013e610450565b606091505b505060405163bc11eabb60e01b815281151560048201529091506024016103ee565b80356001600160a01b0381168114610488575f5ffd5b919050565b5f5f5f6040848603121561049f575f5ffd5b6104a884610472565b9250602084013567ffffffffffffffff8111156104c3575f5ffd5b8401601f810186136104d3575f5ffd5b803567ffffffffffffffff8111156104e9575f5ffd5b8660208260051b84010111156104fd575f5ffd5b939660209190910195509293505050565b604080825283519082018190525f9060208501906060840190835b818110156105495783511515835260209384019390920191600101610529565b5050838103602080860191909152855180835291810192508501905f5b81811015610584578251845260209384019390920191600101610566565b50919695505050505050565b5f5f5f604084860312156105a2575f5ffd5b6105ab84610472565b9250602084013567ffffffffffffffff8111156105c6575f5ffd5b8401601f810186136105d6575f5ffd5b803567ffffffffffffffff8111156105ec575f5ffd5b8660208284010111156104fd575f5ffd5b634e487b7160e01b5f52604160045260245ffd5b634e487b7160e01b5f52603260045260245ffd5b5f5f8335601e1984360301811261063a575f5ffd5b83018035915067ffffffffffffffff821115610654575f5ffd5b602001915036819003821315610668575f5ffd5b9250929050565b6001600160a01b03841681526040602082018190528101829052818360608301375f818301606090810191909152601f909201601f1916010192915050565b805160208201516001600160e01b03198116919060048210156106e5576001600160e01b0319600483900360031b81901b82161692505b5050919050565b5f5f858511156106fa575f5ffd5b83861115610706575f5ffd5b5050820193919092039150565b8035602083101561072b575f19602084900360031b1b165b92915050565b5f82518060208501845e5f920191825250919050565b5f60208284031215610757575f5ffd5b5051919050565b818382375f910190815291905056fea2646970667358221220c6784c8226687045707195fa2cc4bee4e68ba3130500849a75a064366c76e97d64736f6c634300081e0033";

export const simulatorAbi = parseAbi([
  "function simulate(address token, bytes[] calls) returns (bool[] ok, uint256[] balances)",
  "error Outcome(bool ok)",
]);

/**
 * The most transfers one eth_call simulates: about 70,000 gas each, and never more than X402Simulator's caps per
 * probe and balance read (PROBE_GAS_MAX, 200,000; BALANCE_GAS_MAX, 30,000), so a full batch comes to about 15M gas
 * at most, well under a block's.
 */
export const maxSimulationBatch = 64;

type Asked = { authorization: Eip3009Authorization; signature: Hex };

/** A balance X402Simulator could not read (its UNKNOWN). */
const unknownBalance = 2n ** 256n - 1n;

/**
 * One transfer's answer: whether the token would take it, and the payer's balance then (null: not read); `atBlock`,
 * the block asked before the call, whose state or a later one's the call ran against, whether or not the balance
 * was read (verify.ts Taken).
 */
export type Simulated = {
  readonly taken: boolean;
  readonly balance: BalanceReading | null;
  readonly atBlock: bigint;
};

/** For each transfer, whether the token would take it from the hot wallet now, and its payer's balance: one eth_call. */
export async function simulateAll(chain: X402Chain, asked: readonly Asked[]): Promise<Simulated[]> {
  const calls = asked.map(({ authorization, signature }) => {
    const vrs = vrsOf(signature);
    if (vrs === null) return "0x" as Hex;
    return encodeFunctionData({
      abi: eip3009Abi,
      functionName: "transferWithAuthorization",
      args: transferArgs(authorization, vrs),
    });
  });
  // Asked from the node, not the call's block.number: on some chains (Arbitrum's) that is the L1 block's number.
  const atBlock = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
  const { data } = await chain.publicClient.call({
    to: chain.hotWallet,
    data: encodeFunctionData({ abi: simulatorAbi, functionName: "simulate", args: [chain.token, calls] }),
    stateOverride: [{ address: chain.hotWallet, code: simulatorRuntimeCode }],
  });
  if (data === undefined) throw new BaseError("the simulator returned nothing");
  const [ok, balances] = decodeFunctionResult({ abi: simulatorAbi, functionName: "simulate", data });
  if (ok.length !== asked.length || balances.length !== asked.length)
    throw new BaseError("the simulator answered for other transfers");
  return asked.map((_, i) => ({
    taken: ok[i] === true && calls[i] !== "0x",
    balance: balances[i] === unknownBalance ? null : { amount: balances[i] as bigint, atBlock },
    atBlock,
  }));
}

/**
 * The payer's balance of the chain's token at the latest block, or null when it cannot be read; `atBlock`, that
 * block, kept when the balance is not read (verify.ts Taken), null when it was not read either.
 */
async function balanceOf(
  chain: X402Chain,
  payer: Eip3009Authorization["from"],
): Promise<{ readonly balance: BalanceReading | null; readonly atBlock: bigint | null }> {
  let atBlock: bigint;
  try {
    atBlock = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return { balance: null, atBlock: null };
  }
  try {
    const amount = await chain.publicClient.readContract({
      address: chain.token,
      abi: eip3009Abi,
      functionName: "balanceOf",
      args: [payer],
      blockNumber: atBlock,
    });
    return { balance: { amount, atBlock }, atBlock };
  } catch (error) {
    if (!(error instanceof BaseError)) throw error;
    return { balance: null, atBlock };
  }
}

/**
 * verify.ts's checkChain, batched per chain: the same answer for each payment. `balances: false` (a caller that does
 * not weigh balances, the facilitator) spares a payment simulated alone, the batch not run, its balance read.
 */
export function createSimulationBatcher(options: { balances?: boolean } = {}) {
  const balances = options.balances ?? true;
  const byChain = new WeakMap<X402Chain, (asked: Asked) => Promise<Simulated | null>>();
  const batchOf = (chain: X402Chain) => {
    let batch = byChain.get(chain);
    if (batch === undefined) {
      batch = groupCommit(async (asked: readonly Asked[]): Promise<(Simulated | null)[]> => {
        try {
          return await simulateAll(chain, asked);
        } catch (error) {
          if (!(error instanceof BaseError)) throw error;
          // Not answered as a batch: each payment is simulated alone (null), as without batching.
          return asked.map(() => null);
        }
      }, maxSimulationBatch);
      byChain.set(chain, batch);
    }
    return batch;
  };
  return async (
    chain: X402Chain,
    authorization: Eip3009Authorization,
    signature: Hex,
  ): Promise<Refused | Taken> => {
    const signed = vrsOf(signature) !== null;
    const simulated = signed ? await batchOf(chain)({ authorization, signature }) : null;
    if (simulated?.taken === true)
      return { ok: true, balance: simulated.balance, atBlock: simulated.atBlock };
    // Refused by the batch's probe: said why from reads that do not revert when they can. A reverting eth_call costs
    // a node that builds Solidity stack traces (Hardhat's in-process chain) up to a second of CPU: a spent nonce, a
    // short balance or a window the chain's clock shut must not cost that. Anything else (the probe out of its gas
    // cap, a paused token; a bad signature is refused before simulating) is simulated alone, which says why.
    if (simulated?.taken === false) {
      const why = await whyNotTaken(chain, authorization);
      if (why !== null) return why;
    }
    // Simulated alone, which reads no balance: the batch's reading stands (a probe past its gas cap still read it),
    // and its block, the alone's state a later one's; without one (the batch not run: a node without state
    // overrides) the balance and its block are read beside the simulation, the block kept when the balance is not.
    const [alone, read] = await Promise.all([
      checkChain(chain, authorization, signature),
      simulated === null && signed && balances
        ? balanceOf(chain, authorization.from)
        : { balance: simulated?.balance ?? null, atBlock: simulated?.atBlock ?? null },
    ]);
    return alone.ok ? { ok: true, balance: read.balance, atBlock: read.atBlock } : alone;
  };
}
