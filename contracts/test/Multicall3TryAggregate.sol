// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title Multicall3TryAggregate — the one Multicall3 function the official x402 batch-settlement facilitator
/// calls (`tryAggregate`, for its channel-state reads), for Hardhat's chain, where Multicall3 is not predeployed.
/// Its runtime code is placed at Multicall3's address (0xcA11bde05977b3631167028862bE2a173976CA11) by the tests.
contract Multicall3TryAggregate {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    /// @notice Calls each target in order; with `requireSuccess`, a failed call reverts the whole.
    function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory results) {
        results = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; ++i) {
            (bool success, bytes memory returnData) = calls[i].target.call(calls[i].callData);
            require(success || !requireSuccess, "Multicall3: call failed");
            results[i] = Result(success, returnData);
        }
    }
}
