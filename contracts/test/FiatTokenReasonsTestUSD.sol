// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TestUSD} from "../TestUSD.sol";

/// @dev TestUSD that refuses as USDC (FiatTokenV2_2) does, with its reason strings (`Error(string)`) instead of
/// OpenZeppelin's custom errors: an authorization used (or canceled), not yet valid or expired, and a transfer past
/// the sender's balance. Its storage is TestUSD's, so a test can put this code at a deployed TestUSD's address
/// (Hardhat's setCode) and keep every balance and authorization. Test-only.
contract FiatTokenReasonsTestUSD is TestUSD {
    constructor(string memory name_, string memory symbol_, string memory version_)
        TestUSD(name_, symbol_, version_)
    {}

    function _consumeNonce(address authorizer, bytes32 nonce) internal override {
        require(!authorizationState(authorizer, nonce), "FiatTokenV2: authorization is used or canceled");
        super._consumeNonce(authorizer, nonce);
    }

    function _checkValidity(uint256 validAfter, uint256 validBefore) internal view override {
        require(block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid");
        require(block.timestamp < validBefore, "FiatTokenV2: authorization is expired");
    }

    function _update(address from, address to, uint256 value) internal override {
        require(from == address(0) || balanceOf(from) >= value, "ERC20: transfer amount exceeds balance");
        super._update(from, to, value);
    }
}
