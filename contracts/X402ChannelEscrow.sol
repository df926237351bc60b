// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";

/// @notice What `X402ChannelEscrow.deposit` asks of a collector: move `amount` of `token` from `payer` to the
/// escrow (msg.sender), authorised by `data`, for channel `channelId`. The escrow credits what its own token
/// balance rose by, never what a collector says.
interface IX402DepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external;
}

/// @title X402ChannelEscrow — the escrow of x402's `batch-settlement` scheme: payment channels paid off-chain with
/// cumulative vouchers, many of them claimed in one transaction and swept to the receiver in one transfer.
///
/// @notice The interface (functions, struct layouts, EIP-712 domain and type strings) is the one the official
/// x402 EVM package (npm x402/evm, 2.27.0) signs and submits; canonical address 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003.
///
/// A channel is its `ChannelConfig` (payer, payerAuthorizer, receiver, receiverAuthorizer, token, withdrawDelay,
/// salt); its id is the EIP-712 hash of that struct under the domain {name "x402 Batch Settlement", version "1",
/// chainId, this contract}. Nothing of the config is stored: every call passes it and the id is recomputed.
///
/// State per channel: `balance` (deposited, less what was refunded or withdrawn; claimed and settled funds stay
/// counted in it) and `totalClaimed` (cumulative, never falls). Invariant: totalClaimed ≤ balance, so the payer's
/// unclaimed escrow is balance − totalClaimed. Per (receiver, token): `totalClaimed` (sum of its channels' claims)
/// and `totalSettled` (what was transferred out). The contract holds, per token, Σ balance − Σ totalSettled.
///
///  - deposit: through a collector (ERC-3009 `receiveWithAuthorization`, see X402Erc3009DepositCollector); the
///    amount credited is the rise of this contract's token balance, which must equal `amount`. A config whose
///    receiver is this contract or the collector funding it is refused (what it claims could never leave).
///  - claim / claimWithSignature: a payer voucher {channelId, maxClaimableAmount} (signed by payerAuthorizer, or by
///    the payer through ERC-1271 / ECDSA when payerAuthorizer is zero) lets the receiver side raise totalClaimed up to
///    maxClaimableAmount and never past the balance. The new totalClaimed is the receiver side's choice (it may have
///    charged less than the voucher allows), so it is authorised by the receiverAuthorizer: as msg.sender (`claim`)
///    or by its EIP-712 signature over ClaimBatch{ClaimEntry{channelId, maxClaimableAmount, totalClaimed}[]}. A
///    claim at or below the channel's totalClaimed moves nothing (a replay is a no-op). Claims move no tokens.
///  - settle(receiver, token): anyone; transfers claimed-but-unsettled funds to the receiver, once.
///  - refund / refundWithSignature: the receiver side gives unclaimed escrow back to the payer, capped at
///    balance − totalClaimed; refundNonce is incremented before the transfer, so a signed refund is used once.
///  - initiateWithdraw / finalizeWithdraw: the payer (or payerAuthorizer) takes unclaimed escrow back without the
///    receiver, after withdrawDelay (15 minutes to 30 days, fixed in the config) — the receiver's time to claim.
///
/// Every state-changing function is nonReentrant (transient storage) and changes state before it transfers out;
/// deposit must call its collector first (to measure what arrived) and is guarded the same way. `multicall`
/// (delegatecalls to itself, as the facilitator's claim-then-refund uses) runs each call under the same guard.
///
/// Integration rules for the receiver side (the server that verifies vouchers and submits claims and refunds):
///  - A refund signature's amount must be capped at balance − the cumulative amount charged on the channel (not
///    balance − totalClaimed on chain). The contract caps a refund at the unclaimed escrow *at the time it runs*;
///    a signed refund submitted before the claim of what was charged (anyone may submit it) would otherwise pay
///    the payer charged funds back, and the claim would then exceed the balance. Bundling claim-then-refund in one
///    multicall does not protect a refund signature that was handed out on its own.
///  - A payer with code can refuse at claim time a voucher it approved at verify time. With payerAuthorizer zero the
///    voucher is checked against the payer itself: by ECDSA while it has no code, by ERC-1271 as soon as it has
///    any — a contract wallet, or an EOA delegated under EIP-7702 (possibly after verify), whose delegate then
///    answers, even for the key's own signature. Its refusal reverts the whole claim batch, every other channel in
///    it included. Require payerAuthorizer ≠ 0 (an ECDSA key, checked here without calling anything), or claim
///    such channels in a batch of their own.
///  - A pending withdrawal whose delay has passed can be finalized at any later time (it does not expire, and a
///    top-up does not restart it): treat its amount as leaving the channel at any moment, and claim what was
///    charged before relying on the rest.
///  - The EIP-712 domain uses address(this), and the official clients sign channel ids, vouchers and refunds for the
///    canonical address above: deployed anywhere else, no official signature verifies. It works only deployed at
///    (or, on a test chain, its runtime code set at) 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003.
///
/// @dev No immutables: the contract works unchanged when its runtime code is placed at the canonical address.
contract X402ChannelEscrow is ReentrancyGuard, Multicall {
    using SafeERC20 for IERC20;

    struct ChannelConfig {
        address payer;
        address payerAuthorizer;
        address receiver;
        address receiverAuthorizer;
        address token;
        uint40 withdrawDelay;
        bytes32 salt;
    }

    struct Voucher {
        ChannelConfig channel;
        uint128 maxClaimableAmount;
    }

    struct VoucherClaim {
        Voucher voucher;
        bytes signature;
        uint128 totalClaimed;
    }

    struct ChannelState {
        uint128 balance;
        uint128 totalClaimed;
    }

    struct PendingWithdrawal {
        uint128 amount;
        uint40 initiatedAt;
    }

    struct ReceiverState {
        uint128 totalClaimed;
        uint128 totalSettled;
    }

    uint40 public constant MIN_WITHDRAW_DELAY = 15 minutes;
    uint40 public constant MAX_WITHDRAW_DELAY = 30 days;

    bytes32 public constant CHANNEL_CONFIG_TYPEHASH = keccak256(
        "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 public constant REFUND_TYPEHASH = keccak256("Refund(bytes32 channelId,uint256 nonce,uint128 amount)");
    bytes32 public constant CLAIM_ENTRY_TYPEHASH =
        keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
    bytes32 public constant CLAIM_BATCH_TYPEHASH = keccak256(
        "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("x402 Batch Settlement");
    bytes32 private constant VERSION_HASH = keccak256("1");

    mapping(bytes32 channelId => ChannelState) public channels;
    mapping(bytes32 channelId => PendingWithdrawal) public pendingWithdrawals;
    mapping(bytes32 channelId => uint256) public refundNonce;
    mapping(address receiver => mapping(address token => ReceiverState)) public receivers;

    /// @notice A deposit into a channel whose balance was zero (its first, or the first after everything unclaimed was
    /// returned before anything was claimed).
    event ChannelCreated(bytes32 indexed channelId, address indexed payer, address indexed receiver, ChannelConfig config);
    event Deposited(bytes32 indexed channelId, address indexed payer, address collector, uint128 amount, uint128 balance);
    /// @notice The channel's totalClaimed rose by `amount` to `totalClaimed`; credited to `receiver` for `token`.
    event Claimed(bytes32 indexed channelId, address indexed receiver, address indexed token, uint128 amount, uint128 totalClaimed);
    event Settled(address indexed receiver, address indexed token, address indexed sender, uint128 amount);
    event Refunded(bytes32 indexed channelId, address indexed payer, uint128 amount, uint256 refundNonce);
    event WithdrawInitiated(bytes32 indexed channelId, uint128 amount, uint256 finalizeAfter);
    event WithdrawFinalized(bytes32 indexed channelId, address indexed payer, uint128 amount);
    /// @notice No unclaimed escrow is left (balance = totalClaimed) after a refund or a withdrawal.
    event ChannelClosed(bytes32 indexed channelId);

    error X402ChannelInvalidConfig();
    error X402ChannelWithdrawDelayOutOfRange(uint40 withdrawDelay);
    error X402ChannelZeroAmount();
    error X402ChannelDepositMismatch(uint256 expected, uint256 received);
    error X402ChannelBalanceOverflow();
    error X402ChannelNoClaims();
    error X402ChannelAuthorizerMismatch(uint256 index);
    error X402ChannelInvalidAuthorizerSignature();
    error X402ChannelNotReceiverAuthorizer(uint256 index, address caller);
    error X402ChannelClaimExceedsVoucher(bytes32 channelId, uint128 totalClaimed, uint128 maxClaimableAmount);
    error X402ChannelClaimExceedsBalance(bytes32 channelId, uint128 totalClaimed, uint128 balance);
    error X402ChannelInvalidVoucherSignature(bytes32 channelId);
    error X402ChannelNothingToSettle(address receiver, address token);
    error X402ChannelNotReceiver(address caller);
    error X402ChannelNotPayer(address caller);
    error X402ChannelRefundNonceMismatch(uint256 expected, uint256 given);
    error X402ChannelInvalidRefundSignature();
    error X402ChannelNothingToRefund(bytes32 channelId);
    error X402ChannelWithdrawExceedsUnclaimed(uint128 amount, uint128 unclaimed);
    error X402ChannelNoPendingWithdrawal(bytes32 channelId);
    error X402ChannelWithdrawDelayNotElapsed(uint256 finalizeAfter, uint256 timestamp);

    // ------------------------------------------------------------------------------------------------------------
    // Deposit

    /// @notice Adds `amount` of `config.token` to the channel, pulled from the payer by `collector` with
    /// `collectorData` (for the ERC-3009 collector: validAfter, validBefore, salt, signature).
    function deposit(ChannelConfig calldata config, uint128 amount, address collector, bytes calldata collectorData)
        external
        nonReentrant
    {
        if (amount == 0) revert X402ChannelZeroAmount();
        if (
            config.payer == address(0) || config.receiver == address(0) || config.receiver == address(this)
                || config.receiver == collector || config.receiverAuthorizer == address(0) || config.token == address(0)
        ) revert X402ChannelInvalidConfig();
        if (config.withdrawDelay < MIN_WITHDRAW_DELAY || config.withdrawDelay > MAX_WITHDRAW_DELAY) {
            revert X402ChannelWithdrawDelayOutOfRange(config.withdrawDelay);
        }
        bytes32 id = _channelId(_domainSeparator(), config);
        IERC20 token = IERC20(config.token);
        uint256 before = token.balanceOf(address(this));
        IX402DepositCollector(collector).collect(config.payer, config.token, amount, id, collectorData);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert X402ChannelDepositMismatch(amount, received);

        ChannelState storage channel = channels[id];
        uint128 previous = channel.balance;
        if (previous == 0) {
            emit ChannelCreated(id, config.payer, config.receiver, config);
        }
        uint256 next = uint256(previous) + amount;
        if (next > type(uint128).max) revert X402ChannelBalanceOverflow();
        channel.balance = uint128(next);
        emit Deposited(id, config.payer, collector, amount, uint128(next));
    }

    // ------------------------------------------------------------------------------------------------------------
    // Claims and settlement

    /// @notice Claims `voucherClaims`, each authorised by the caller being that channel's receiverAuthorizer.
    function claim(VoucherClaim[] calldata voucherClaims) external nonReentrant {
        uint256 count = voucherClaims.length;
        if (count == 0) revert X402ChannelNoClaims();
        bytes32 separator = _domainSeparator();
        bytes32[] memory ids = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != msg.sender) {
                revert X402ChannelNotReceiverAuthorizer(i, msg.sender);
            }
            ids[i] = _channelId(separator, voucherClaims[i].voucher.channel);
        }
        _claim(separator, voucherClaims, ids);
    }

    /// @notice Claims `voucherClaims`, authorised by the receiverAuthorizer's EIP-712 signature over their
    /// ClaimBatch. Every claim must name the same receiverAuthorizer (EOA, or ERC-1271 contract).
    function claimWithSignature(VoucherClaim[] calldata voucherClaims, bytes calldata authorizerSignature)
        external
        nonReentrant
    {
        uint256 count = voucherClaims.length;
        if (count == 0) revert X402ChannelNoClaims();
        bytes32 separator = _domainSeparator();
        address authorizer = voucherClaims[0].voucher.channel.receiverAuthorizer;
        for (uint256 i = 1; i < count; ++i) {
            if (voucherClaims[i].voucher.channel.receiverAuthorizer != authorizer) {
                revert X402ChannelAuthorizerMismatch(i);
            }
        }
        (bytes32 digest, bytes32[] memory ids) = _claimBatchDigest(separator, voucherClaims);
        if (!SignatureChecker.isValidSignatureNowCalldata(authorizer, digest, authorizerSignature)) {
            revert X402ChannelInvalidAuthorizerSignature();
        }
        _claim(separator, voucherClaims, ids);
    }

    /// @notice Transfers to `receiver` what its channels in `token` have claimed and not yet been settled.
    function settle(address receiver, address token) external nonReentrant {
        ReceiverState storage state = receivers[receiver][token];
        uint128 claimed = state.totalClaimed;
        uint128 amount = claimed - state.totalSettled;
        if (amount == 0) revert X402ChannelNothingToSettle(receiver, token);
        state.totalSettled = claimed;
        IERC20(token).safeTransfer(receiver, amount);
        emit Settled(receiver, token, msg.sender, amount);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Refunds (by the receiver side) and withdrawals (by the payer side)

    /// @notice The receiver (or its receiverAuthorizer) returns up to `amount` of unclaimed escrow to the payer.
    function refund(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        if (msg.sender != config.receiver && msg.sender != config.receiverAuthorizer) {
            revert X402ChannelNotReceiver(msg.sender);
        }
        bytes32 id = _channelId(_domainSeparator(), config);
        uint256 nonce = refundNonce[id];
        refundNonce[id] = nonce + 1;
        _refund(config, id, amount, nonce);
    }

    /// @notice Anyone submits a refund the receiverAuthorizer signed (Refund{channelId, nonce, amount}); `nonce`
    /// must be the channel's current refundNonce, which is then incremented, so the signature is used once.
    function refundWithSignature(
        ChannelConfig calldata config,
        uint128 amount,
        uint256 nonce,
        bytes calldata receiverAuthorizerSignature
    ) external nonReentrant {
        bytes32 separator = _domainSeparator();
        bytes32 id = _channelId(separator, config);
        uint256 expected = refundNonce[id];
        if (nonce != expected) revert X402ChannelRefundNonceMismatch(expected, nonce);
        bytes32 digest = _typedDataHash(separator, keccak256(abi.encode(REFUND_TYPEHASH, id, nonce, amount)));
        if (!SignatureChecker.isValidSignatureNowCalldata(config.receiverAuthorizer, digest, receiverAuthorizerSignature))
        {
            revert X402ChannelInvalidRefundSignature();
        }
        refundNonce[id] = nonce + 1;
        _refund(config, id, amount, nonce);
    }

    /// @notice The payer (or payerAuthorizer) asks for `amount` of unclaimed escrow back; it can be taken after
    /// withdrawDelay. Initiating again replaces the request and restarts the delay.
    function initiateWithdraw(ChannelConfig calldata config, uint128 amount) external nonReentrant {
        _onlyPayer(config);
        if (amount == 0) revert X402ChannelZeroAmount();
        bytes32 id = _channelId(_domainSeparator(), config);
        ChannelState storage channel = channels[id];
        uint128 unclaimed = channel.balance - channel.totalClaimed;
        if (amount > unclaimed) revert X402ChannelWithdrawExceedsUnclaimed(amount, unclaimed);
        pendingWithdrawals[id] = PendingWithdrawal({amount: amount, initiatedAt: uint40(block.timestamp)});
        emit WithdrawInitiated(id, amount, block.timestamp + config.withdrawDelay);
    }

    /// @notice After withdrawDelay, pays the payer the requested amount, capped at the unclaimed escrow then.
    function finalizeWithdraw(ChannelConfig calldata config) external nonReentrant {
        _onlyPayer(config);
        bytes32 id = _channelId(_domainSeparator(), config);
        PendingWithdrawal memory pending = pendingWithdrawals[id];
        if (pending.initiatedAt == 0) revert X402ChannelNoPendingWithdrawal(id);
        uint256 finalizeAfter = uint256(pending.initiatedAt) + config.withdrawDelay;
        if (block.timestamp < finalizeAfter) revert X402ChannelWithdrawDelayNotElapsed(finalizeAfter, block.timestamp);
        delete pendingWithdrawals[id];
        ChannelState storage channel = channels[id];
        uint128 balance = channel.balance;
        uint128 claimed = channel.totalClaimed;
        uint128 unclaimed = balance - claimed;
        uint128 amount = pending.amount < unclaimed ? pending.amount : unclaimed;
        channel.balance = balance - amount;
        if (balance - amount == claimed) emit ChannelClosed(id);
        emit WithdrawFinalized(id, config.payer, amount);
        if (amount > 0) IERC20(config.token).safeTransfer(config.payer, amount);
    }

    // ------------------------------------------------------------------------------------------------------------
    // Views

    function getChannelId(ChannelConfig calldata config) external view returns (bytes32) {
        return _channelId(_domainSeparator(), config);
    }

    function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) external view returns (bytes32) {
        return _typedDataHash(_domainSeparator(), keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, maxClaimableAmount)));
    }

    function getRefundDigest(bytes32 channelId, uint256 nonce, uint128 amount) external view returns (bytes32) {
        return _typedDataHash(_domainSeparator(), keccak256(abi.encode(REFUND_TYPEHASH, channelId, nonce, amount)));
    }

    function getClaimBatchDigest(VoucherClaim[] calldata voucherClaims) external view returns (bytes32 digest) {
        (digest,) = _claimBatchDigest(_domainSeparator(), voucherClaims);
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    // ------------------------------------------------------------------------------------------------------------
    // Internals

    function _claim(bytes32 separator, VoucherClaim[] calldata voucherClaims, bytes32[] memory ids) private {
        // Consecutive claims for one (receiver, token) are credited with one storage write.
        address receiver;
        address token;
        uint256 credit;
        uint256 count = voucherClaims.length;
        for (uint256 i = 0; i < count; ++i) {
            VoucherClaim calldata item = voucherClaims[i];
            uint128 amount = _claimOne(separator, item, ids[i]);
            if (amount == 0) continue;
            ChannelConfig calldata config = item.voucher.channel;
            if (config.receiver != receiver || config.token != token) {
                _credit(receiver, token, credit);
                receiver = config.receiver;
                token = config.token;
                credit = 0;
            }
            credit += amount;
        }
        _credit(receiver, token, credit);
    }

    /// @dev Raises one channel's totalClaimed to the claim's, within its voucher and its balance; returns by how
    /// much (zero when the claim is not above what was already claimed: nothing is checked or changed then).
    function _claimOne(bytes32 separator, VoucherClaim calldata item, bytes32 id) private returns (uint128 amount) {
        uint128 total = item.totalClaimed;
        uint128 max = item.voucher.maxClaimableAmount;
        if (total > max) revert X402ChannelClaimExceedsVoucher(id, total, max);
        ChannelState storage channel = channels[id];
        uint128 previous = channel.totalClaimed;
        if (total <= previous) return 0;
        uint128 balance = channel.balance;
        if (total > balance) revert X402ChannelClaimExceedsBalance(id, total, balance);
        if (!_voucherSignedByPayer(separator, item.voucher.channel, id, max, item.signature)) {
            revert X402ChannelInvalidVoucherSignature(id);
        }
        channel.totalClaimed = total;
        amount = total - previous;
        emit Claimed(id, item.voucher.channel.receiver, item.voucher.channel.token, amount, total);
    }

    function _credit(address receiver, address token, uint256 amount) private {
        if (amount == 0) return;
        ReceiverState storage state = receivers[receiver][token];
        uint256 next = uint256(state.totalClaimed) + amount;
        // Unreachable while each channel's totalClaimed ≤ its balance and the token's supply fits 128 bits.
        if (next > type(uint128).max) revert X402ChannelBalanceOverflow();
        state.totalClaimed = uint128(next);
    }

    function _refund(ChannelConfig calldata config, bytes32 id, uint128 amount, uint256 nonce) private {
        if (amount == 0) revert X402ChannelZeroAmount();
        ChannelState storage channel = channels[id];
        uint128 balance = channel.balance;
        uint128 claimed = channel.totalClaimed;
        uint128 unclaimed = balance - claimed;
        uint128 refunded = amount < unclaimed ? amount : unclaimed;
        if (refunded == 0) revert X402ChannelNothingToRefund(id);
        channel.balance = balance - refunded;
        if (balance - refunded == claimed) {
            delete pendingWithdrawals[id];
            emit ChannelClosed(id);
        }
        emit Refunded(id, config.payer, refunded, nonce);
        IERC20(config.token).safeTransfer(config.payer, refunded);
    }

    function _onlyPayer(ChannelConfig calldata config) private view {
        if (msg.sender != config.payer && (msg.sender != config.payerAuthorizer || msg.sender == address(0))) {
            revert X402ChannelNotPayer(msg.sender);
        }
    }

    /// @dev payerAuthorizer set: an ECDSA signature by it (as the official facilitator checks). Zero: the payer's
    /// signature, ECDSA for an EOA or ERC-1271 for a contract wallet.
    function _voucherSignedByPayer(
        bytes32 separator,
        ChannelConfig calldata config,
        bytes32 id,
        uint128 maxClaimableAmount,
        bytes calldata signature
    ) private view returns (bool) {
        bytes32 digest =
            _typedDataHash(separator, keccak256(abi.encode(VOUCHER_TYPEHASH, id, maxClaimableAmount)));
        address authorizer = config.payerAuthorizer;
        if (authorizer != address(0)) {
            (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
            return err == ECDSA.RecoverError.NoError && recovered == authorizer;
        }
        return SignatureChecker.isValidSignatureNowCalldata(config.payer, digest, signature);
    }

    function _claimBatchDigest(bytes32 separator, VoucherClaim[] calldata voucherClaims)
        private
        pure
        returns (bytes32 digest, bytes32[] memory ids)
    {
        uint256 count = voucherClaims.length;
        ids = new bytes32[](count);
        bytes32[] memory entryHashes = new bytes32[](count);
        for (uint256 i = 0; i < count; ++i) {
            VoucherClaim calldata item = voucherClaims[i];
            bytes32 id = _channelId(separator, item.voucher.channel);
            ids[i] = id;
            entryHashes[i] = keccak256(
                abi.encode(CLAIM_ENTRY_TYPEHASH, id, item.voucher.maxClaimableAmount, item.totalClaimed)
            );
        }
        bytes32 arrayHash;
        assembly ("memory-safe") {
            arrayHash := keccak256(add(entryHashes, 0x20), mul(count, 0x20))
        }
        digest = _typedDataHash(separator, keccak256(abi.encode(CLAIM_BATCH_TYPEHASH, arrayHash)));
    }

    function _channelId(bytes32 separator, ChannelConfig calldata config) private pure returns (bytes32) {
        return _typedDataHash(
            separator,
            keccak256(
                abi.encode(
                    CHANNEL_CONFIG_TYPEHASH,
                    config.payer,
                    config.payerAuthorizer,
                    config.receiver,
                    config.receiverAuthorizer,
                    config.token,
                    config.withdrawDelay,
                    config.salt
                )
            )
        );
    }

    /// @dev Computed on every call (no cached immutable), so it is right at whatever address the code runs.
    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _typedDataHash(bytes32 separator, bytes32 structHash) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }
}
