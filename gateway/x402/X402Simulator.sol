// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice Never deployed: its runtime code is put at the hot wallet's address by an eth_call state override
/// (gateway/x402/simulate-batch.ts), so that one call says, for each of many EIP-3009 transfers, whether the token
/// would take it from the hot wallet, each against the same state (every probe's changes are reverted). Each probe
/// has a gas cap, so that one transfer whose token call burns gas cannot starve the probes after it: a probe past
/// its cap is answered false for that transfer alone (which simulate-batch.ts then simulates by itself).
contract X402Simulator {
    error Outcome(bool ok);

    /// @dev The most gas one probe spends. A transferWithAuthorization costs about 60,000 gas here (ecrecover, the
    /// nonce's and two balances' slots, cold again in every probe since each one reverts), a token behind a proxy
    /// (USDC's) some 10,000 more: 200,000 is about three times that, and a full batch of capped probes
    /// (simulate-batch.ts maxSimulationBatch, 64) stays under 13M gas, within what nodes give an eth_call.
    uint256 internal constant PROBE_GAS_MAX = 200_000;

    function simulate(address token, bytes[] calldata calls) external returns (bool[] memory ok) {
        ok = new bool[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            // Out of gas (its cap, or what the call has left) reverts with no Outcome: false.
            try this.probe{gas: PROBE_GAS_MAX}(token, calls[i]) {} catch (bytes memory reason) {
                ok[i] = reason.length == 36 && bytes4(reason) == Outcome.selector && reason[35] == 0x01;
            }
        }
    }

    /// @dev Always reverts, undoing the transfer: with Outcome(true) when the token took the call.
    function probe(address token, bytes calldata data) external {
        if (msg.sender != address(this) || token.code.length == 0) revert Outcome(false);
        (bool success,) = token.call(data);
        revert Outcome(success);
    }
}
