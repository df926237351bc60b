// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice Never deployed: its runtime code is put at the hot wallet's address by an eth_call state override
/// (gateway/x402/simulate-batch.ts), so that one call says, for each of many EIP-3009 transfers, whether the token
/// would take it from the hot wallet, each against the same state (every probe's changes are reverted).
contract X402Simulator {
    error Outcome(bool ok);

    function simulate(address token, bytes[] calldata calls) external returns (bool[] memory ok) {
        ok = new bool[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            try this.probe(token, calls[i]) {} catch (bytes memory reason) {
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
