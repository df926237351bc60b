// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";

/// @title X402BatchSettler — many EIP-3009 transfer authorizations (x402 `exact` payments) in one transaction.
///
/// @notice `settle(token, to, items)` calls `token.transferWithAuthorization` once per item, in order. Each item
/// stands alone: one that the token refuses (bad signature, used or cancelled nonce, outside its window, payer
/// short of funds) is skipped and reported, and the others still settle. The outcome of item i is bit i of
/// the returned `settledBitmap`, also logged by `BatchSettled`; each skipped item also logs
/// `AuthorizationFailed` with the first four bytes of the token's revert (its error selector). Each settled
/// item is, as ever, the token's own `AuthorizationUsed(from, nonce)` and `Transfer(from, to, value)`.
///
/// Who may call: anyone. The contract adds no power: EIP-3009's `transferWithAuthorization` is open to any
/// caller, the signature fixes payer, payee, amount, window and nonce, and a nonce is spent once by the token.
/// No funds stay in it: the money moves from each payer straight to `to` (never through this contract, which
/// refuses `to == address(this)`), it has no payable function, no state and no owner.
///
/// Calldata is packed (the fair saving; nothing about the token is changed): one `token` and one payee `to`
/// per call, and per item ITEM_BYTES = 145 bytes:
///   from (20) | value (uint128, 16) | validAfter (uint48, 6) | validBefore (uint48, 6) | nonce (32) |
///   r (32) | s (32) | v (1)
/// An authorization whose value or window does not fit those widths (or that needs an ERC-1271 signature) is
/// settled one by one instead; every USDC amount fits 128 bits and every timestamp 48.
///
/// Limits: at most ITEMS_MAX = 256 items (the bitmap is one word). Gas: 40,385 per item measured with TestUSD
/// (npm run bench -- gas, x402-batch-100: 4.0M for 100), so a full batch is about 10.3M, under the 2^24 ≈ 16.8M
/// per-transaction cap of EIP-7825 with some room for a heavier token (USDC behind its proxy).
///
/// Gas and failures: each item's call is given exactly ITEM_GAS_MAX (200,000: five times what one costs with
/// TestUSD, and USDC's with an ERC-1271 signer's check), never more. Given all the gas left, as it was, one payer
/// whose signature check burns what it is given (an EIP-7702-delegated account's isValidSignature, which USDC
/// calls for a payer with code) took all but 1/64 of it: every batch with that payer in it reverted, or cost the
/// caller up to the 16.8M cap, at no cost to the payer, whose authorization never ran. Now such an item fails
/// alone, at a cost of ITEM_GAS_MAX. An item that needs more than that is refused like any the token refuses.
/// A call that fails for want of the caller's gas must still not pass for a refusal (the caller would drop a good
/// payment): before each item, unless ITEM_GAS_MAX (and the 1/64 EIP-150 keeps back) and FAILURE_GAS_RESERVE
/// (to log a refusal after it) are left, the whole call reverts with X402BatchGasTooLow. Gas unused is not
/// charged, so the headroom costs a caller nothing but a gas limit about 250,000 above what the items use.
contract X402BatchSettler {
    uint256 public constant ITEMS_MAX = 256;
    uint256 public constant ITEM_BYTES = 145;
    uint256 public constant FAILURE_GAS_RESERVE = 50_000;
    uint256 public constant ITEM_GAS_MAX = 200_000;
    /// What must be left before an item: its call's gas, the 1/64 of it EIP-150 keeps back, and the reserve.
    uint256 private constant ITEM_GAS_NEEDED = ITEM_GAS_MAX + ITEM_GAS_MAX / 63 + 1 + FAILURE_GAS_RESERVE;

    /// @notice `count` items were offered for `token` to `to`; bit i of `settledBitmap` is set when item i settled.
    event BatchSettled(address indexed token, address indexed to, uint256 count, uint256 settledBitmap);
    /// @notice Item `index` (payer `from`, authorization `nonce`) was refused by the token: `reason` is the first
    /// four bytes of its revert (zero when it reverted without data). Nothing moved for it.
    event AuthorizationFailed(
        address indexed token, address indexed from, bytes32 indexed nonce, uint256 index, bytes4 reason
    );

    error X402BatchEmpty();
    error X402BatchTooLarge(uint256 count, uint256 max);
    error X402BatchMalformed(uint256 length, uint256 itemBytes);
    error X402BatchNotAContract(address token);
    error X402BatchInvalidPayee(address to);
    error X402BatchGasTooLow(uint256 index, uint256 gasLeft, uint256 reserve);

    /// @notice Settles every item it can (see the contract's notice) and returns which did, as a bitmap.
    /// @param token An EIP-3009 token (USDC, TestUSD).
    /// @param to The payee every item's authorization names.
    /// @param items `count × ITEM_BYTES` packed items, count from 1 to ITEMS_MAX.
    function settle(address token, address to, bytes calldata items) external returns (uint256 settledBitmap) {
        uint256 length = items.length;
        if (length == 0) revert X402BatchEmpty();
        if (length % ITEM_BYTES != 0) revert X402BatchMalformed(length, ITEM_BYTES);
        uint256 count = length / ITEM_BYTES;
        if (count > ITEMS_MAX) revert X402BatchTooLarge(count, ITEMS_MAX);
        // A call to an address without code "succeeds" and would report every item settled.
        if (token.code.length == 0) revert X402BatchNotAContract(token);
        if (to == address(0) || to == address(this)) revert X402BatchInvalidPayee(to);

        for (uint256 i = 0; i < count; ++i) {
            uint256 gasLeft = gasleft();
            if (gasLeft < ITEM_GAS_NEEDED) revert X402BatchGasTooLow(i, gasLeft, ITEM_GAS_NEEDED);
            (bool ok, bytes4 reason) = _settleOne(token, to, items, i);
            if (ok) {
                settledBitmap |= uint256(1) << i;
            } else {
                uint256 at = i * ITEM_BYTES;
                emit AuthorizationFailed(
                    token, address(bytes20(items[at:at + 20])), bytes32(items[at + 48:at + 80]), i, reason
                );
            }
        }
        emit BatchSettled(token, to, count, settledBitmap);
    }

    /// @dev Decodes item `i` and calls `token.transferWithAuthorization(from, to, value, validAfter,
    /// validBefore, nonce, v, r, s)` with it. The call's arguments are written past the free memory pointer,
    /// which is not moved (scratch memory), so the loop's memory does not grow with the batch.
    function _settleOne(address token, address to, bytes calldata items, uint256 i)
        private
        returns (bool ok, bytes4 reason)
    {
        bytes4 selector = IERC3009.transferWithAuthorization.selector;
        assembly ("memory-safe") {
            // i < count ≤ 256 and count × 145 = items.length, so the item lies inside the calldata.
            let p := add(items.offset, mul(i, 145))
            let m := mload(0x40)
            mstore(m, selector)
            mstore(add(m, 4), shr(96, calldataload(p))) // from: 20 bytes
            mstore(add(m, 36), to)
            mstore(add(m, 68), shr(128, calldataload(add(p, 20)))) // value: 16 bytes
            mstore(add(m, 100), shr(208, calldataload(add(p, 36)))) // validAfter: 6 bytes
            mstore(add(m, 132), shr(208, calldataload(add(p, 42)))) // validBefore: 6 bytes
            mstore(add(m, 164), calldataload(add(p, 48))) // nonce
            mstore(add(m, 196), shr(248, calldataload(add(p, 144)))) // v: 1 byte
            mstore(add(m, 228), calldataload(add(p, 80))) // r
            mstore(add(m, 260), calldataload(add(p, 112))) // s
            ok := call(ITEM_GAS_MAX, token, 0, m, 292, 0, 0)
            if and(iszero(ok), gt(returndatasize(), 3)) {
                returndatacopy(m, 0, 4)
                reason := and(mload(m), 0xffffffff00000000000000000000000000000000000000000000000000000000)
            }
        }
    }
}
