// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

/// @title Forwarder — the code behind every deposit address: it holds what was sent to it until its factory
/// sweeps it to the factory's owner.
/// @dev Deployed once by the factory as the implementation of EIP-1167 clones; `factory` is immutable, so every
/// clone (which runs this code by delegatecall) answers only to the factory that made it.
contract Forwarder {
    using SafeERC20 for IERC20;

    /// @notice The factory that deployed the implementation: the only caller a forwarder obeys.
    address public immutable factory;

    /// @notice Only the factory may sweep.
    error ForwarderUnauthorized(address caller);

    constructor() {
        factory = msg.sender;
    }

    /// @notice Moves this forwarder's whole balance of `token` to `to`; returns the amount moved (0: nothing held).
    function sweep(IERC20 token, address to) external returns (uint256 amount) {
        if (msg.sender != factory) revert ForwarderUnauthorized(msg.sender);
        amount = token.balanceOf(address(this));
        if (amount > 0) token.safeTransfer(to, amount);
    }
}

/// @title ForwarderFactory — deposit addresses known before they exist (CREATE2, EIP-1167 clones of one
/// Forwarder), swept in batches to one owner (the gateway's hot wallet).
/// @notice A payer sends tokens to `forwarderAddress(salt)`, a plain address with no code yet. `sweep` deploys the
/// forwarders of a batch of salts that are not deployed yet and moves each one's balance to `owner`, in one
/// transaction. Tokens can only ever leave a forwarder to `owner`.
contract ForwarderFactory {
    /// @notice Where every sweep sends the tokens, and the only account that may sweep.
    address public immutable owner;
    /// @notice The Forwarder every deposit address is a clone of.
    address public immutable implementation;
    /// @notice The most salts one sweep takes (its gas stays well below a block's).
    uint256 public constant SWEEP_SALTS_MAX = 200;

    /// @notice A forwarder was deployed at its predicted address.
    event ForwarderDeployed(bytes32 indexed salt, address indexed forwarder);
    /// @notice A forwarder's balance of `token` moved to the owner.
    event Swept(address indexed token, bytes32 indexed salt, address indexed forwarder, uint256 amount);

    /// @notice Only the owner may sweep.
    error ForwarderFactoryUnauthorized(address caller);
    /// @notice A sweep of more salts than SWEEP_SALTS_MAX.
    error ForwarderFactoryTooManySalts(uint256 count, uint256 max);
    /// @notice The owner is the zero address.
    error ForwarderFactoryZeroOwner();

    constructor(address owner_) {
        if (owner_ == address(0)) revert ForwarderFactoryZeroOwner();
        owner = owner_;
        implementation = address(new Forwarder());
    }

    /// @notice The deposit address of `salt`: where the forwarder is, or will be once a sweep deploys it.
    function forwarderAddress(bytes32 salt) public view returns (address) {
        return Clones.predictDeterministicAddress(implementation, salt);
    }

    /// @notice Deploys the forwarders of `salts` that do not exist yet and moves each one's balance of `token` to
    /// the owner. Returns the total moved. Sweeping an empty or already swept forwarder moves nothing.
    function sweep(IERC20 token, bytes32[] calldata salts) external returns (uint256 total) {
        if (msg.sender != owner) revert ForwarderFactoryUnauthorized(msg.sender);
        if (salts.length > SWEEP_SALTS_MAX) revert ForwarderFactoryTooManySalts(salts.length, SWEEP_SALTS_MAX);
        for (uint256 i = 0; i < salts.length; ++i) {
            bytes32 salt = salts[i];
            address forwarder = forwarderAddress(salt);
            if (forwarder.code.length == 0) {
                Clones.cloneDeterministic(implementation, salt);
                emit ForwarderDeployed(salt, forwarder);
            }
            uint256 amount = Forwarder(forwarder).sweep(token, owner);
            if (amount > 0) {
                emit Swept(address(token), salt, forwarder, amount);
                // A token's total supply bounds the sum of balances: no overflow.
                unchecked {
                    total += amount;
                }
            }
        }
    }
}
