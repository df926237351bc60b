// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC3009} from "@openzeppelin/contracts/interfaces/draft-IERC3009.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";

/// @title RevenueSplitter — revenue splits and batch settlement for ERC-20 stablecoins.
///
/// @notice A split is a list of recipients (strictly ascending addresses) with shares in basis points that
/// sum to 10,000. Its id is `keccak256(abi.encode(recipients, basisPoints))`; creating it twice is harmless.
/// Money comes in with `pay` (ERC-20 `transferFrom`) or `payWithAuthorization` (EIP-3009
/// `receiveWithAuthorization`: the payer signs once, anyone submits) and accrues per split and token.
/// `distribute` credits every recipient's share in one call; recipients (or anyone on their behalf) then
/// pull with `withdraw`, or `withdrawAll` pushes every balance of a split in one call. `settleBatch` pays
/// many netted off-chain payouts from the caller's tokens in one transaction.
///
/// Remainder rule: a distribution of `amount` gives recipient i `floor(amount * bps[i] / 10000)`, and the
/// remainder (`amount` minus the sum of those, fewer units than there are recipients) goes to the first
/// recipient (index 0, the lowest address). So the shares always sum to `amount` exactly.
///
/// Recipient limit: at most RECIPIENTS_MAX = 300 recipients per split. Gas reason: every call on a split
/// must fit one transaction, whose gas is capped at 2^24 ≈ 16.8M by EIP-7825. The heaviest is `withdrawAll`
/// to recipients who never held the token: about 32,000 gas each with TestUSD (a zero-to-non-zero balance
/// write alone is 22,100), more with a proxied token such as USDC, so 500 recipients (about 16M) would leave
/// no margin; 300 keep it under 10M (9.6M measured). A first `distribute` writes fresh words at about 8,100
/// gas per recipient (2.4M at 300), `createSplit` about 4,000 per recipient (1.2M). The 0xSplits v2 audit
/// found its push split stuck above ~1,100 recipients and advised ~250.
/// `settleBatch` takes at most SETTLE_BATCH_PAYEES_MAX = 500 payees: 13.2M gas measured with TestUSD when
/// every payee is a new holder, 4.7M when all already hold the token. A rail settling a heavier token to
/// new holders should size its batches by `estimateGas`.
///
/// Tokens: each token's money is accounted on its own; a token that takes a fee on transfer, rebases or
/// lies about balances is refused at payment (the received amount must equal the amount paid) and can only
/// ever affect its own accruals. Every state-changing function is `nonReentrant` (transient storage), and
/// storage is written before any token call except where a received amount must be measured.
///
/// @dev Storage layout, chosen for gas:
/// - `_basisPoints[id]`: shares packed 15 × uint16 per word, and the recipient count in the top 16 bits of
///   word 0, so `distribute` needs neither the definition in calldata nor one storage read per recipient,
///   and knowing that a split exists costs the same read as its first 15 shares.
/// - `_totals[id][token]`: uint128 received (cumulative) | uint128 distributed (cumulative) in one word that
///   never returns to zero, so a warm `pay` or `distribute` rewrites a non-zero word (5,000 gas, not 22,100).
/// - `_balanceWords[keccak256(id, token)]`: recipient balances, three 85-bit lanes per word, each stored as
///   balance + 1 once touched, so a withdrawal leaves 1 (not 0) and the next distribution rewrites a non-zero
///   word. One storage write credits three recipients. The price: a recipient's unpaid balance is at most
///   BALANCE_MAX = 2^85 - 2 units (3.8e19 dollars of a 6-decimal token, 3.8e7 of an 18-decimal one);
///   `distribute` reverts with RevenueSplitterBalanceOverflow until that recipient is paid by `withdraw`
///   (which anyone may call).
contract RevenueSplitter is ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant BASIS_POINTS_TOTAL = 10_000;
    uint256 public constant RECIPIENTS_MAX = 300;
    uint256 public constant SETTLE_BATCH_PAYEES_MAX = 500;
    /// @notice The largest cumulative amount one split can receive in one token.
    uint256 public constant RECEIVED_MAX = type(uint128).max;

    uint256 private constant LOW_128 = type(uint128).max;
    uint256 private constant BASIS_POINTS_PER_WORD = 15;
    uint256 private constant BASIS_POINTS_WORDS = 20; // 20 × 15 = RECIPIENTS_MAX
    uint256 private constant COUNT_SHIFT = 240; // the recipient count sits in bits 240..255 of word 0
    uint256 private constant LANES = 3; // recipient balances per storage word
    uint256 private constant LANE_BITS = 85;
    uint256 private constant LANE_MASK = (uint256(1) << LANE_BITS) - 1;
    uint256 private constant BALANCE_WORDS = 100; // 100 × 3 = RECIPIENTS_MAX
    /// @notice The largest unpaid balance one recipient of one split can hold in one token.
    uint256 public constant BALANCE_MAX = LANE_MASK - 1;

    mapping(bytes32 splitId => uint256[BASIS_POINTS_WORDS] packed) private _basisPoints;
    mapping(bytes32 splitId => mapping(address token => uint256 receivedAndDistributed)) private _totals;
    mapping(bytes32 splitTokenKey => uint256[BALANCE_WORDS] packed) private _balanceWords;
    mapping(address payer => mapping(bytes32 ref => bool settled)) private _settledBatches;

    /// @notice A split was created (once per definition).
    event SplitCreated(bytes32 indexed splitId, address[] recipients, uint16[] basisPoints);
    /// @notice `amount` of `token` from `payer` accrued to split `splitId`; `ref` is the payer's reference.
    event Paid(bytes32 indexed splitId, address indexed token, address indexed payer, uint256 amount, bytes32 ref);
    /// @notice `amount` of `token` accrued to `splitId` was credited to its recipients by the remainder rule.
    event Distributed(
        bytes32 indexed splitId, address indexed token, address indexed distributor, uint256 amount, bytes32 ref
    );
    /// @notice `recipient` (index `index` of split `splitId`) was paid its balance `amount` of `token`.
    event Withdrawn(
        bytes32 indexed splitId, address indexed token, address indexed recipient, uint256 index, uint256 amount
    );
    /// @notice `payer` paid `amounts[i]` of `token` to `payees[i]` for `payeeCount` payees; `total` is their
    /// sum and `batchHash` is `keccak256(abi.encode(payees, amounts))`. Each leg is also the token's own
    /// `Transfer(payer, payees[i], amounts[i])` event in the same transaction. (The arrays themselves are not
    /// logged: at 64 bytes a payee that would add about 6% to a netted settlement's gas.)
    event BatchSettled(
        address indexed token,
        address indexed payer,
        bytes32 indexed ref,
        uint256 payeeCount,
        uint256 total,
        bytes32 batchHash
    );

    error RevenueSplitterNoRecipients();
    error RevenueSplitterTooManyRecipients(uint256 count, uint256 max);
    error RevenueSplitterLengthMismatch(uint256 addresses, uint256 values);
    error RevenueSplitterRecipientsNotAscending(uint256 index);
    error RevenueSplitterZeroBasisPoints(uint256 index);
    error RevenueSplitterBasisPointsSum(uint256 sum, uint256 expected);
    error RevenueSplitterUnknownSplit(bytes32 splitId);
    error RevenueSplitterZeroAmount();
    error RevenueSplitterReceivedOverflow(bytes32 splitId, address token, uint256 received, uint256 max);
    error RevenueSplitterAmountNotReceived(address token, uint256 expected, uint256 received);
    error RevenueSplitterNothingToDistribute(bytes32 splitId, address token);
    error RevenueSplitterBalanceOverflow(bytes32 splitId, address token, uint256 index, uint256 max);
    error RevenueSplitterIndexOutOfRange(uint256 index, uint256 count);
    error RevenueSplitterNothingToWithdraw(bytes32 splitId, address token, uint256 index);
    error RevenueSplitterEmptyBatch();
    error RevenueSplitterBatchTooLarge(uint256 count, uint256 max);
    error RevenueSplitterZeroPayee(uint256 index);
    error RevenueSplitterZeroPayout(uint256 index);
    error RevenueSplitterDirtyAddress(uint256 index);
    error RevenueSplitterBatchAlreadySettled(address payer, bytes32 ref);

    // ------------------------------------------------------------------------------------------------
    // Splits

    /// @notice The id of a split definition: `keccak256(abi.encode(recipients, basisPoints))`.
    function splitIdOf(address[] calldata recipients, uint16[] calldata basisPoints) public pure returns (bytes32) {
        return keccak256(abi.encode(recipients, basisPoints));
    }

    /// @notice Creates the split (recipients strictly ascending, shares non-zero and summing to 10,000) and
    /// returns its id. Creating an existing split returns its id and changes nothing.
    function createSplit(address[] calldata recipients, uint16[] calldata basisPoints)
        external
        nonReentrant
        returns (bytes32 splitId)
    {
        uint256 count = recipients.length;
        if (count == 0) revert RevenueSplitterNoRecipients();
        if (count > RECIPIENTS_MAX) revert RevenueSplitterTooManyRecipients(count, RECIPIENTS_MAX);
        if (basisPoints.length != count) revert RevenueSplitterLengthMismatch(count, basisPoints.length);
        splitId = splitIdOf(recipients, basisPoints);
        uint256[BASIS_POINTS_WORDS] storage packed = _basisPoints[splitId];
        if (packed[0] != 0) return splitId;

        address previous = address(0);
        uint256 sum = 0;
        uint256 word = count << COUNT_SHIFT;
        for (uint256 i = 0; i < count; ++i) {
            address recipient = recipients[i];
            // Strictly ascending from address(0): no zero address and no duplicates.
            if (recipient <= previous) revert RevenueSplitterRecipientsNotAscending(i);
            previous = recipient;
            uint256 bps = basisPoints[i];
            if (bps == 0) revert RevenueSplitterZeroBasisPoints(i);
            // unchecked: at most 500 terms of at most 65,535 each.
            unchecked {
                sum += bps;
            }
            uint256 slot = i % BASIS_POINTS_PER_WORD;
            word |= bps << (16 * slot);
            if (slot == BASIS_POINTS_PER_WORD - 1 || i == count - 1) {
                packed[i / BASIS_POINTS_PER_WORD] = word;
                word = 0;
            }
        }
        if (sum != BASIS_POINTS_TOTAL) revert RevenueSplitterBasisPointsSum(sum, BASIS_POINTS_TOTAL);
        emit SplitCreated(splitId, recipients, basisPoints);
    }

    /// @notice How many recipients split `splitId` has; 0 if it was never created.
    function recipientCountOf(bytes32 splitId) external view returns (uint256) {
        return _recipientCount(splitId);
    }

    /// @notice The shares of split `splitId` in basis points, in recipient order.
    function basisPointsOf(bytes32 splitId) external view returns (uint16[] memory basisPoints) {
        uint256 count = _recipientCount(splitId);
        basisPoints = new uint16[](count);
        uint256[BASIS_POINTS_WORDS] storage packed = _basisPoints[splitId];
        for (uint256 i = 0; i < count; ++i) {
            basisPoints[i] = uint16(packed[i / BASIS_POINTS_PER_WORD] >> (16 * (i % BASIS_POINTS_PER_WORD)));
        }
    }

    /// @notice Cumulative amounts of `token` received by and distributed from split `splitId`.
    function totalsOf(bytes32 splitId, address token) external view returns (uint256 received, uint256 distributed) {
        uint256 totals = _totals[splitId][token];
        return (totals & LOW_128, totals >> 128);
    }

    /// @notice What `distribute` would credit now.
    function undistributedOf(bytes32 splitId, address token) external view returns (uint256) {
        uint256 totals = _totals[splitId][token];
        return (totals & LOW_128) - (totals >> 128);
    }

    /// @notice The balance of `token` credited to recipient number `index` of split `splitId` and not yet paid.
    function balanceOf(bytes32 splitId, address token, uint256 index) external view returns (uint256) {
        uint256 count = _recipientCount(splitId);
        if (index >= count) revert RevenueSplitterIndexOutOfRange(index, count);
        uint256 stored = _lane(_balanceWords[_balanceKey(splitId, token)][index / LANES], index % LANES);
        return stored == 0 ? 0 : stored - 1;
    }

    // ------------------------------------------------------------------------------------------------
    // Paying in

    /// @notice Pays `amount` of `token` from the caller into split `splitId` (needs an allowance).
    function pay(bytes32 splitId, address token, uint256 amount, bytes32 ref) external nonReentrant {
        uint256 balanceBefore = _checkPayment(splitId, token, amount);
        _accrue(splitId, token, amount);
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        _checkReceived(token, balanceBefore, amount);
        emit Paid(splitId, token, msg.sender, amount, ref);
    }

    /// @notice The EIP-3009 nonce a payer signs for `payWithAuthorization(splitId, …, ref)`. It binds the
    /// authorization to this split and reference, so nobody can redirect a signature seen in the mempool
    /// into another split. Give every payment a fresh random `ref` (it is also the replay protection).
    function authorizationNonceOf(bytes32 splitId, bytes32 ref) public pure returns (bytes32) {
        return keccak256(abi.encode(splitId, ref));
    }

    /// @notice Pays `amount` of `token` from `from` into split `splitId` with an EIP-3009
    /// `ReceiveWithAuthorization` that `from` signed for `to = this contract`, `value = amount` and
    /// `nonce = authorizationNonceOf(splitId, ref)`. Anyone may submit it (the gateway pays the gas).
    function payWithAuthorization(
        bytes32 splitId,
        address token,
        address from,
        uint256 amount,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 ref,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        uint256 balanceBefore = _checkPayment(splitId, token, amount);
        _accrue(splitId, token, amount);
        // Assembled field by field: ten parameters plus nine call arguments exceed the legacy code
        // generator's stack, and the legacy pipeline compiles several times faster than via-IR.
        ReceiveAuthorization memory authorization;
        authorization.from = from;
        authorization.value = amount;
        authorization.validAfter = validAfter;
        authorization.validBefore = validBefore;
        authorization.nonce = authorizationNonceOf(splitId, ref);
        authorization.v = v;
        authorization.r = r;
        authorization.s = s;
        _receiveWithAuthorization(token, authorization);
        _checkReceived(token, balanceBefore, amount);
        emit Paid(splitId, token, from, amount, ref);
    }

    struct ReceiveAuthorization {
        address from;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    function _receiveWithAuthorization(address token, ReceiveAuthorization memory a) private {
        IERC3009(token).receiveWithAuthorization(
            a.from, address(this), a.value, a.validAfter, a.validBefore, a.nonce, a.v, a.r, a.s
        );
    }

    // ------------------------------------------------------------------------------------------------
    // Paying out

    /// @notice Credits everything of `token` accrued to split `splitId` since the last distribution to its
    /// recipients by the remainder rule, and returns the amount. Anyone may call.
    function distribute(bytes32 splitId, address token, bytes32 ref) external nonReentrant returns (uint256 amount) {
        uint256[BASIS_POINTS_WORDS] storage packedBps = _basisPoints[splitId];
        uint256 count = packedBps[0] >> COUNT_SHIFT;
        if (count == 0) revert RevenueSplitterUnknownSplit(splitId);
        uint256 totals = _totals[splitId][token];
        uint256 received = totals & LOW_128;
        amount = received - (totals >> 128);
        if (amount == 0) revert RevenueSplitterNothingToDistribute(splitId, token);
        _totals[splitId][token] = received | (received << 128);
        uint256 overflowing = _credit(_balanceWords[_balanceKey(splitId, token)], packedBps, count, amount);
        if (overflowing != 0) revert RevenueSplitterBalanceOverflow(splitId, token, overflowing - 1, BALANCE_MAX);
        emit Distributed(splitId, token, msg.sender, amount, ref);
    }

    /// @dev Credits `amount` to the `count` recipients by the remainder rule. Walks the recipients from the
    /// last to the first, so that recipient 0's share — amount minus everyone else's — is known when it is
    /// reached, in one pass; each balance word is read once and written once, after its lowest lane.
    /// @return overflowing 1 + the index of the first recipient whose balance would exceed BALANCE_MAX
    /// (the caller reverts), or 0.
    function _credit(
        uint256[BALANCE_WORDS] storage balances,
        uint256[BASIS_POINTS_WORDS] storage packedBps,
        uint256 count,
        uint256 amount
    ) private returns (uint256 overflowing) {
        uint256 othersTotal = 0;
        uint256 bpsWord = 0;
        uint256 i = count - 1;
        uint256 stored = balances[i / LANES];
        // unchecked: every share is at most `amount` < 2^128, and the shares of recipients 1..n-1 sum to at
        // most `amount` (floors of fractions that sum to at most 1), so `amount - othersTotal` cannot
        // underflow; `i` is decremented only while positive; a lane + share is at most 2^85 + 2^128, and is
        // checked against LANE_MASK before it is stored.
        unchecked {
            while (true) {
                uint256 share;
                if (i == 0) {
                    share = amount - othersTotal;
                } else {
                    if (i % BASIS_POINTS_PER_WORD == BASIS_POINTS_PER_WORD - 1 || i + 1 == count) {
                        bpsWord = packedBps[i / BASIS_POINTS_PER_WORD];
                    }
                    share = (amount * ((bpsWord >> (16 * (i % BASIS_POINTS_PER_WORD))) & 0xffff)) / BASIS_POINTS_TOTAL;
                    othersTotal += share;
                }
                uint256 lane = (stored >> (LANE_BITS * (i % LANES))) & LANE_MASK;
                lane = (lane == 0 ? 1 : lane) + share;
                if (lane > LANE_MASK) return i + 1;
                stored = (stored & ~(LANE_MASK << (LANE_BITS * (i % LANES)))) | (lane << (LANE_BITS * (i % LANES)));
                if (i % LANES == 0) {
                    balances[i / LANES] = stored;
                    if (i == 0) break;
                    stored = balances[i / LANES - 1];
                }
                --i;
            }
        }
    }

    /// @notice Pays recipient number `index` of the split (given by its definition) its whole balance of
    /// `token`. Anyone may call; the money always goes to the recipient.
    function withdraw(address token, address[] calldata recipients, uint16[] calldata basisPoints, uint256 index)
        external
        nonReentrant
        returns (uint256 amount)
    {
        bytes32 splitId = _knownSplit(recipients, basisPoints);
        if (index >= recipients.length) revert RevenueSplitterIndexOutOfRange(index, recipients.length);
        uint256[BALANCE_WORDS] storage balances = _balanceWords[_balanceKey(splitId, token)];
        uint256 word = balances[index / LANES];
        uint256 shift = LANE_BITS * (index % LANES);
        uint256 stored = (word >> shift) & LANE_MASK;
        if (stored <= 1) revert RevenueSplitterNothingToWithdraw(splitId, token, index);
        amount = stored - 1;
        balances[index / LANES] = (word & ~(LANE_MASK << shift)) | (uint256(1) << shift);
        emit Withdrawn(splitId, token, recipients[index], index, amount);
        IERC20(token).safeTransfer(recipients[index], amount);
    }

    /// @notice Pays every recipient of the split its whole balance of `token` in one call (recipients with
    /// nothing to withdraw are skipped) and returns the total paid. One transfer the token refuses (say, a
    /// blacklisted recipient) reverts the whole call; the others can still `withdraw` one by one.
    function withdrawAll(address token, address[] calldata recipients, uint16[] calldata basisPoints)
        external
        nonReentrant
        returns (uint256 total)
    {
        bytes32 splitId = _knownSplit(recipients, basisPoints);
        uint256 count = recipients.length;
        uint256[BALANCE_WORDS] storage balances = _balanceWords[_balanceKey(splitId, token)];
        uint256[] memory amounts = new uint256[](count);
        // Effects first: every lane with something owed goes back to 1 (touched, nothing owed).
        for (uint256 word = 0; word * LANES < count; ++word) {
            uint256 stored = balances[word];
            uint256 updated = stored;
            for (uint256 lane = 0; lane < LANES; ++lane) {
                uint256 shift = LANE_BITS * lane;
                uint256 value = (stored >> shift) & LANE_MASK;
                if (value > 1) {
                    amounts[word * LANES + lane] = value - 1;
                    updated = (updated & ~(LANE_MASK << shift)) | (uint256(1) << shift);
                }
            }
            if (updated != stored) balances[word] = updated;
        }
        // Interactions.
        for (uint256 i = 0; i < count; ++i) {
            uint256 amount = amounts[i];
            if (amount == 0) continue;
            total += amount;
            emit Withdrawn(splitId, token, recipients[i], i, amount);
            IERC20(token).safeTransfer(recipients[i], amount);
        }
    }

    /// @notice Pays `amounts[i]` of `token` from the caller to `payees[i]` for every i (needs an allowance
    /// for the total) — many netted off-chain payouts in one transaction. `ref` may be used once per caller,
    /// so a retried settlement can never pay twice.
    function settleBatch(address token, address[] calldata payees, uint256[] calldata amounts, bytes32 ref)
        external
        nonReentrant
        returns (uint256 total)
    {
        uint256 count = payees.length;
        if (count == 0) revert RevenueSplitterEmptyBatch();
        if (count > SETTLE_BATCH_PAYEES_MAX) revert RevenueSplitterBatchTooLarge(count, SETTLE_BATCH_PAYEES_MAX);
        if (amounts.length != count) revert RevenueSplitterLengthMismatch(count, amounts.length);
        if (_settledBatches[msg.sender][ref]) revert RevenueSplitterBatchAlreadySettled(msg.sender, ref);
        _settledBatches[msg.sender][ref] = true;
        total = _transferFromEach(token, payees, amounts);
        emit BatchSettled(token, msg.sender, ref, count, total, _batchHash(payees, amounts));
    }

    /// @dev `token.transferFrom(msg.sender, payees[i], amounts[i])` for every i, accepted as SafeERC20 does
    /// (returns true, or returns nothing from an address with code; a revert is bubbled up), with the checks
    /// of settleBatch (no zero payee, no zero amount, no dirty address, no overflow of the total). One loop
    /// over calldata and one call buffer: the netted-settlement path, where each payee costs the token's
    /// transfer plus about 1,000 gas, of which about 550 is the payee's calldata.
    function _transferFromEach(address token, address[] calldata payees, uint256[] calldata amounts)
        private
        returns (uint256 total)
    {
        uint256 failure = 0; // 1: zero payee, 2: zero amount, 3: token refused, 4: dirty address
        uint256 index = 0;
        assembly ("memory-safe") {
            // The call buffer sits past the free memory pointer and is never allocated.
            let buffer := mload(0x40)
            mstore(buffer, shl(224, 0x23b872dd)) // transferFrom(address,address,uint256)
            mstore(add(buffer, 0x04), caller())
            for {} lt(index, payees.length) { index := add(index, 1) } {
                let payee := calldataload(add(payees.offset, shl(5, index)))
                let amount := calldataload(add(amounts.offset, shl(5, index)))
                if shr(160, payee) {
                    failure := 4
                    break
                }
                if iszero(payee) {
                    failure := 1
                    break
                }
                if iszero(amount) {
                    failure := 2
                    break
                }
                total := add(total, amount)
                if lt(total, amount) {
                    mstore(0x00, shl(224, 0x4e487b71)) // Panic(0x11): arithmetic overflow
                    mstore(0x04, 0x11)
                    revert(0x00, 0x24)
                }
                mstore(add(buffer, 0x24), payee)
                mstore(add(buffer, 0x44), amount)
                if iszero(call(gas(), token, 0, buffer, 0x64, 0x00, 0x20)) {
                    returndatacopy(buffer, 0, returndatasize())
                    revert(buffer, returndatasize())
                }
                if iszero(and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1))) {
                    // Also accepted: no return data at all from an address with code.
                    if or(returndatasize(), iszero(extcodesize(token))) {
                        failure := 3
                        break
                    }
                }
            }
        }
        if (failure == 1) revert RevenueSplitterZeroPayee(index);
        if (failure == 2) revert RevenueSplitterZeroPayout(index);
        if (failure == 3) revert SafeERC20.SafeERC20FailedOperation(token);
        if (failure == 4) revert RevenueSplitterDirtyAddress(index);
    }

    /// @dev `keccak256(abi.encode(payees, amounts))` by copying the calldata words as they are, without the
    /// encoder's per-element loops (about 150 gas a payee). Equal to batchHashOf because _transferFromEach
    /// has refused dirty addresses; the TypeScript tests compare the event's hash with batchHashOf's.
    function _batchHash(address[] calldata payees, uint256[] calldata amounts) private pure returns (bytes32 hash) {
        assembly ("memory-safe") {
            // Scratch memory past the free memory pointer, left unallocated.
            let size := shl(5, payees.length)
            let m := mload(0x40)
            mstore(m, 0x40)
            mstore(add(m, 0x20), add(0x60, size))
            mstore(add(m, 0x40), payees.length)
            calldatacopy(add(m, 0x60), payees.offset, size)
            let second := add(add(m, 0x60), size)
            mstore(second, amounts.length)
            calldatacopy(add(second, 0x20), amounts.offset, size)
            hash := keccak256(m, add(0x80, shl(1, size)))
        }
    }

    /// @notice The `batchHash` of BatchSettled: `keccak256(abi.encode(payees, amounts))`.
    function batchHashOf(address[] calldata payees, uint256[] calldata amounts) public pure returns (bytes32) {
        return keccak256(abi.encode(payees, amounts));
    }

    /// @notice Whether `payer` already settled a batch with reference `ref`.
    function batchSettled(address payer, bytes32 ref) external view returns (bool) {
        return _settledBatches[payer][ref];
    }

    // ------------------------------------------------------------------------------------------------
    // Internals

    function _checkPayment(bytes32 splitId, address token, uint256 amount) private view returns (uint256) {
        if (_recipientCount(splitId) == 0) revert RevenueSplitterUnknownSplit(splitId);
        if (amount == 0) revert RevenueSplitterZeroAmount();
        return IERC20(token).balanceOf(address(this));
    }

    function _accrue(bytes32 splitId, address token, uint256 amount) private {
        uint256 totals = _totals[splitId][token];
        uint256 received = (totals & LOW_128) + amount;
        if (received > RECEIVED_MAX) revert RevenueSplitterReceivedOverflow(splitId, token, received, RECEIVED_MAX);
        _totals[splitId][token] = (totals & ~LOW_128) | received;
    }

    function _checkReceived(address token, uint256 balanceBefore, uint256 amount) private view {
        uint256 balanceAfter = IERC20(token).balanceOf(address(this));
        if (balanceAfter < balanceBefore || balanceAfter - balanceBefore != amount) {
            revert RevenueSplitterAmountNotReceived(
                token, amount, balanceAfter < balanceBefore ? 0 : balanceAfter - balanceBefore
            );
        }
    }

    function _knownSplit(address[] calldata recipients, uint16[] calldata basisPoints)
        private
        view
        returns (bytes32 splitId)
    {
        splitId = splitIdOf(recipients, basisPoints);
        if (_recipientCount(splitId) == 0) revert RevenueSplitterUnknownSplit(splitId);
    }

    function _recipientCount(bytes32 splitId) private view returns (uint256) {
        return _basisPoints[splitId][0] >> COUNT_SHIFT;
    }

    function _balanceKey(bytes32 splitId, address token) private pure returns (bytes32) {
        return keccak256(abi.encode(splitId, token));
    }

    function _lane(uint256 word, uint256 lane) private pure returns (uint256) {
        return (word >> (LANE_BITS * lane)) & LANE_MASK;
    }
}
