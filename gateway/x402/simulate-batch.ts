// The paywall's "would the token take it?" for concurrent payments, one eth_call per batch instead of one
// simulation each: the call puts X402Simulator's runtime code (X402Simulator.sol beside this file, compiled with
// solc 0.8.30, optimizer 200 runs, evm cancun; test/evm/verify-batch.test.ts recompiles it and compares) at the hot
// wallet's address by a state override, and calls it; it calls transferWithAuthorization on the token for each
// payment from the hot wallet's address — the sender settlement uses — each against the same state (every probe
// reverts), and answers which would pass. Each probe has a gas cap, so a token call that burns gas fails its own
// payment only (test/evm/simulate-gas-cap.test.ts). A payment that would pass is answered at once; one that would
// not is said why by verify.ts's whyNotTaken (nonce used, balance, the window by the chain's clock: reads, never a
// reverting call), else — and for a batch the chain would not run (no state overrides, unreachable) — by
// checkChain, which simulates it alone.
import { BaseError, decodeFunctionResult, encodeFunctionData, type Hex, parseAbi } from "viem";
import { groupCommit } from "../../core/group-commit.ts";
import { eip3009Abi, type X402Chain } from "./chains.ts";
import type { Refused } from "./refusals.ts";
import { checkChain, type Eip3009Authorization, transferArgs, vrsOf, whyNotTaken } from "./verify.ts";

/** X402Simulator's runtime code. */
export const simulatorRuntimeCode: Hex =
  "0x608060405234801561000f575f5ffd5b5060043610610034575f3560e01c8063053e94c614610038578063396d731414610061575b5f5ffd5b61004b6100463660046102d0565b610076565b6040516100589190610351565b60405180910390f35b61007461006f366004610395565b6101fe565b005b60608167ffffffffffffffff81111561009157610091610402565b6040519080825280602002602001820160405280156100ba578160200160208202803683370190505b5090505f5b828110156101f6573063396d731462030d40878787868181106100e4576100e4610416565b90506020028101906100f6919061042a565b6040518563ffffffff1660e01b815260040161011493929190610474565b5f604051808303815f88803b15801561012b575f5ffd5b5087f19350505050801561013d575060015b6101ee573d80801561016a576040519150601f19603f3d011682016040523d82523d5f602084013e61016f565b606091505b5080516024148015610199575063bc11eabb60e01b61018d826104b3565b6001600160e01b031916145b80156101ca5750806023815181106101b3576101b3610416565b6020910101516001600160f81b031916600160f81b145b8383815181106101dc576101dc610416565b91151560209283029190910190910152505b6001016100bf565b509392505050565b333014158061021557506001600160a01b0383163b155b1561023a5760405163bc11eabb60e01b81525f60048201526024015b60405180910390fd5b5f836001600160a01b031683836040516102559291906104f1565b5f604051808303815f865af19150503d805f811461028e576040519150601f19603f3d011682016040523d82523d5f602084013e610293565b606091505b505060405163bc11eabb60e01b81528115156004820152909150602401610231565b80356001600160a01b03811681146102cb575f5ffd5b919050565b5f5f5f604084860312156102e2575f5ffd5b6102eb846102b5565b9250602084013567ffffffffffffffff811115610306575f5ffd5b8401601f81018613610316575f5ffd5b803567ffffffffffffffff81111561032c575f5ffd5b8660208260051b8401011115610340575f5ffd5b939660209190910195509293505050565b602080825282518282018190525f918401906040840190835b8181101561038a578351151583526020938401939092019160010161036a565b509095945050505050565b5f5f5f604084860312156103a7575f5ffd5b6103b0846102b5565b9250602084013567ffffffffffffffff8111156103cb575f5ffd5b8401601f810186136103db575f5ffd5b803567ffffffffffffffff8111156103f1575f5ffd5b866020828401011115610340575f5ffd5b634e487b7160e01b5f52604160045260245ffd5b634e487b7160e01b5f52603260045260245ffd5b5f5f8335601e1984360301811261043f575f5ffd5b83018035915067ffffffffffffffff821115610459575f5ffd5b60200191503681900382131561046d575f5ffd5b9250929050565b6001600160a01b03841681526040602082018190528101829052818360608301375f818301606090810191909152601f909201601f1916010192915050565b805160208201516001600160e01b03198116919060048210156104ea576001600160e01b0319600483900360031b81901b82161692505b5050919050565b818382375f910190815291905056fea2646970667358221220d033330aa9c173fceb6f569ff0c0cbcee788fa40ea2c03a9353a4babe6849d5264736f6c634300081e0033";

export const simulatorAbi = parseAbi([
  "function simulate(address token, bytes[] calls) returns (bool[] ok)",
  "error Outcome(bool ok)",
]);

/**
 * The most transfers one eth_call simulates: about 70,000 gas each, and never more than X402Simulator's cap per
 * probe (PROBE_GAS_MAX, 200,000), so a full batch stays under 13M gas, well under a block's.
 */
export const maxSimulationBatch = 64;

type Asked = { authorization: Eip3009Authorization; signature: Hex };

/** For each transfer, whether the token would take it from the hot wallet now: one eth_call. */
export async function simulateAll(chain: X402Chain, asked: readonly Asked[]): Promise<boolean[]> {
  const calls = asked.map(({ authorization, signature }) => {
    const vrs = vrsOf(signature);
    if (vrs === null) return "0x" as Hex;
    return encodeFunctionData({
      abi: eip3009Abi,
      functionName: "transferWithAuthorization",
      args: transferArgs(authorization, vrs),
    });
  });
  const { data } = await chain.publicClient.call({
    to: chain.hotWallet,
    data: encodeFunctionData({ abi: simulatorAbi, functionName: "simulate", args: [chain.token, calls] }),
    stateOverride: [{ address: chain.hotWallet, code: simulatorRuntimeCode }],
  });
  if (data === undefined) throw new BaseError("the simulator returned nothing");
  const ok = decodeFunctionResult({
    abi: simulatorAbi,
    functionName: "simulate",
    data,
  }) as readonly boolean[];
  if (ok.length !== asked.length) throw new BaseError("the simulator answered for other transfers");
  return asked.map((_, i) => ok[i] === true && calls[i] !== "0x");
}

/** verify.ts's checkChain, batched per chain: the same answer for each payment. */
export function createSimulationBatcher() {
  const byChain = new WeakMap<X402Chain, (asked: Asked) => Promise<boolean | null>>();
  const batchOf = (chain: X402Chain) => {
    let batch = byChain.get(chain);
    if (batch === undefined) {
      batch = groupCommit(async (asked: readonly Asked[]) => {
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
  ): Promise<Refused | null> => {
    const taken = vrsOf(signature) === null ? null : await batchOf(chain)({ authorization, signature });
    if (taken === true) return null;
    // Refused by the batch's probe: said why from reads that do not revert when they can. A reverting eth_call costs
    // a node that builds Solidity stack traces (Hardhat's in-process chain) up to a second of CPU: a spent nonce, a
    // short balance or a window the chain's clock shut must not cost that. Anything else (the probe out of its gas
    // cap, a paused token; a bad signature is refused before simulating) is simulated alone, which says why.
    if (taken === false) {
      const why = await whyNotTaken(chain, authorization);
      if (why !== null) return why;
    }
    return checkChain(chain, authorization, signature);
  };
}
