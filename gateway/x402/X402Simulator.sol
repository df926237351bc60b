// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice Never deployed: its runtime code is put at the hot wallet's address by an eth_call state override
/// (gateway/x402/simulate-batch.ts), so that one call says, for each of many EIP-3009 transfers, whether the token
/// would take it from the hot wallet, each against the same state (every probe's changes are reverted). Each probe
/// has a gas cap, so that one transfer whose token call burns gas cannot starve the probes after it: a probe past
/// its cap is answered false for that transfer alone (which simulate-batch.ts then simulates by itself). With each
/// answer comes the payer's balance in the same state (the transfer's `from`, its first argument), which the paywall
/// weighs against what the payer's other payments hold (gateway/x402/claims-batch.ts).
contract X402Simulator {
    error Outcome(bool ok);

    /// @dev The most gas one probe spends. A transferWithAuthorization costs about 60,000 gas here (ecrecover, the
    /// nonce's and two balances' slots, cold in a probe unless an earlier balance read warmed them: each probe
    /// reverts, the reads do not), a token behind a proxy (USDC's) some 10,000 more: 200,000 is about three times
    /// that, and a full batch of capped probes (simulate-batch.ts maxSimulationBatch, 64), balance reads included,
    /// comes to about 15M gas at most, within what nodes give an eth_call.
    uint256 internal constant PROBE_GAS_MAX = 200_000;
    /// @dev The most gas one balance read spends: an ERC-20's balanceOf is a storage read (behind a proxy, with a
    /// delegatecall: some 10,000 gas cold).
    uint256 internal constant BALANCE_GAS_MAX = 30_000;
    /// @dev A balance that could not be read (no `from` in the call, or balanceOf failed).
    uint256 internal constant UNKNOWN = type(uint256).max;
    bytes4 internal constant BALANCE_OF = bytes4(keccak256("balanceOf(address)"));

    function simulate(address token, bytes[] calldata calls)
        external
        returns (bool[] memory ok, uint256[] memory balances)
    {
        ok = new bool[](calls.length);
        balances = new uint256[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            // Out of gas (its cap, or what the call has left) reverts with no Outcome: false.
            try this.probe{gas: PROBE_GAS_MAX}(token, calls[i]) {} catch (bytes memory reason) {
                ok[i] = reason.length == 36 && bytes4(reason) == Outcome.selector && reason[35] == 0x01;
            }
            balances[i] = UNKNOWN;
            if (calls[i].length < 36) continue;
            address from = address(uint160(uint256(bytes32(calls[i][4:36]))));
            (bool read, bytes memory answer) =
                token.staticcall{gas: BALANCE_GAS_MAX}(abi.encodeWithSelector(BALANCE_OF, from));
            if (read && answer.length >= 32) balances[i] = abi.decode(answer, (uint256));
        }
    }

    /// @dev Always reverts, undoing the transfer: with Outcome(true) when the token took the call.
    function probe(address token, bytes calldata data) external {
        if (msg.sender != address(this) || token.code.length == 0) revert Outcome(false);
        (bool success,) = token.call(data);
        revert Outcome(success);
    }
}
