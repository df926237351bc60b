// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IX402DepositCollector} from "./X402ChannelEscrow.sol";

/// @title X402Erc3009DepositCollector — pulls a `batch-settlement` deposit with the payer's ERC-3009
/// `receiveWithAuthorization` and hands it to the escrow.
///
/// @notice Canonical address 0x4020806089470a89826cB9fB1f4059150b550004. The payer signs
/// ReceiveWithAuthorization{from: payer, to: this collector, value: amount, validAfter, validBefore,
/// nonce: keccak256(abi.encode(channelId, salt))} on the token's own EIP-712 domain, as the official x402 EVM
/// client does; `data` is abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature).
/// Binding the nonce to the channel id means the authorization can fund only the channel it was signed for,
/// whoever submits it. Only the escrow may call `collect` (receiveWithAuthorization needs msg.sender = `to` =
/// this contract, so no one else could spend the authorization anyway); the tokens go straight on to the escrow
/// and nothing stays here. What it passes on is what the authorization brought in: its own balance must rise by
/// exactly `amount`, so a token whose `receiveWithAuthorization` moves nothing and still succeeds (a catch-all
/// fallback, as WETH9's) cannot make tokens that reached this contract by mistake fund someone's channel. (The
/// escrow refuses a channel whose receiver is the collector funding it: its settlements would be stranded here.)
///
/// The signature must be 65 bytes (r, s, v), passed to the token's (v, r, s) entry point, which both USDC and
/// TestUSD have: a smart-wallet payer (ERC-1271 through USDC's bytes-signature overload) is not supported.
/// @dev `escrow` is an immutable: for the canonical pair, deploy this with the escrow's canonical address.
contract X402Erc3009DepositCollector is IX402DepositCollector {
    using SafeERC20 for IERC20;

    address public immutable escrow;

    error X402CollectorOnlyEscrow(address caller);
    error X402CollectorInvalidSignatureLength(uint256 length);
    /// @notice receiveWithAuthorization raised this contract's balance by `received`, not the `expected` amount.
    error X402CollectorReceiveMismatch(uint256 expected, uint256 received);

    constructor(address escrow_) {
        escrow = escrow_;
    }

    /// @inheritdoc IX402DepositCollector
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external {
        if (msg.sender != escrow) revert X402CollectorOnlyEscrow(msg.sender);
        uint256 before = IERC20(token).balanceOf(address(this));
        _receive(payer, token, amount, channelId, data);
        uint256 held = IERC20(token).balanceOf(address(this));
        uint256 received = held > before ? held - before : 0;
        if (received != amount) revert X402CollectorReceiveMismatch(amount, received);
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    /// @dev The payer's ReceiveWithAuthorization of `amount` to this contract, its nonce bound to `channelId`.
    function _receive(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) private {
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(data, (uint256, uint256, uint256, bytes));
        if (signature.length != 65) revert X402CollectorInvalidSignatureLength(signature.length);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 0x20))
            s := mload(add(signature, 0x40))
            v := byte(0, mload(add(signature, 0x60)))
        }
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IERC3009(token).receiveWithAuthorization(payer, address(this), amount, validAfter, validBefore, nonce, v, r, s);
    }
}
