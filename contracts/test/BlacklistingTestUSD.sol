// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TestUSD} from "../TestUSD.sol";

/// @dev TestUSD with USDC's blacklist (FiatTokenV2's `blacklist` and its `notBlacklisted` checks, with USDC's
/// revert reason): a blacklisted account neither sends nor receives, so a batch that pays it reverts whole. Its
/// storage is TestUSD's with one mapping after it, so a test can put this code at a deployed TestUSD's address
/// (Hardhat's setCode) and keep every balance, allowance and authorization. Anyone may blacklist. Test-only.
contract BlacklistingTestUSD is TestUSD {
    mapping(address account => bool) public isBlacklisted;

    constructor(string memory name_, string memory symbol_, string memory version_)
        TestUSD(name_, symbol_, version_)
    {}

    function blacklist(address account) external {
        isBlacklisted[account] = true;
    }

    function unBlacklist(address account) external {
        isBlacklisted[account] = false;
    }

    function _update(address from, address to, uint256 value) internal override {
        require(!isBlacklisted[from] && !isBlacklisted[to], "Blacklistable: account is blacklisted");
        super._update(from, to, value);
    }
}
