// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev A token that calls back into a target during every transfer (the call the test arms), and records
/// whether that reentrant call succeeded. Test-only.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public reentrantCall;
    bool public reentryAttempted;
    bool public reentrySucceeded;
    bytes public reentryRevertData;

    constructor() ERC20("Reentrant", "REE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata call) external {
        target = target_;
        reentrantCall = call;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (target != address(0) && from != address(0)) {
            address callee = target;
            target = address(0); // once
            reentryAttempted = true;
            (bool ok, bytes memory data) = callee.call(reentrantCall);
            reentrySucceeded = ok;
            reentryRevertData = data;
        }
    }
}

/// @dev A token that burns 1% of every transfer (fee on transfer). Test-only.
contract FeeOnTransferToken is ERC20 {
    constructor() ERC20("Fee", "FEE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = value / 100;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @dev A token whose transferFrom moves nothing and returns false. Test-only.
contract FalseReturningToken {
    function balanceOf(address) external pure returns (uint256) {
        return 0;
    }

    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }
}

/// @dev A USDT-style token: transfer and transferFrom return nothing. Test-only.
contract NoReturnToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transferFrom(address from, address to, uint256 amount) external {
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }

    function transfer(address to, uint256 amount) external {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
    }
}

/// @dev A WETH9-like token: a fallback that accepts any call it does not know (WETH9's turns the call's value into
/// tokens), so `receiveWithAuthorization` succeeds and moves nothing. Test-only.
contract FallbackToken is ERC20 {
    constructor() ERC20("Wrapped", "WFB") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    fallback() external payable {
        _mint(msg.sender, msg.value);
    }

    receive() external payable {
        _mint(msg.sender, msg.value);
    }
}
