// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TestUSD} from "../TestUSD.sol";
import {FallbackToken, ReentrantToken} from "./HostileTokens.sol";
import {IX402DepositCollector, X402ChannelEscrow} from "../X402ChannelEscrow.sol";
import {X402Erc3009DepositCollector} from "../X402Erc3009DepositCollector.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuard} from "../lib/ReentrancyGuard.sol";
import {CheatTest} from "./Vm.sol";

/// A collector that, holding tokens of its own, tries to re-enter the escrow while a deposit is under way.
contract ReenteringCollector is IX402DepositCollector {
    X402ChannelEscrow private immutable escrow;
    address private immutable receiver;

    constructor(X402ChannelEscrow escrow_, address receiver_) {
        escrow = escrow_;
        receiver = receiver_;
    }

    function collect(address, address token, uint256 amount, bytes32, bytes calldata) external {
        escrow.settle(receiver, token);
        TestUSD(token).transfer(msg.sender, amount);
    }
}

/// A collector that funds the deposit from its own tokens (any collector may be used: the escrow credits only
/// what arrives).
contract GiftCollector is IX402DepositCollector {
    function collect(address, address token, uint256 amount, bytes32, bytes calldata) external {
        TestUSD(token).transfer(msg.sender, amount);
    }
}

/// A contract wallet (ERC-1271) whose owner key signs for it.
contract OwnedWallet {
    address private immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        return ECDSA.recoverCalldata(hash, signature) == owner ? this.isValidSignature.selector : bytes4(0);
    }
}

/// A collector that says it collected and moves nothing.
contract LyingCollector is IX402DepositCollector {
    function collect(address, address, uint256, bytes32, bytes calldata) external {}
}

contract X402ChannelEscrowTest is CheatTest {
    bytes32 private constant RECEIVE_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    uint256 private constant PAYER_KEY = 0xA11CE;
    uint256 private constant AUTHORIZER_KEY = 0xB0B;
    uint256 private constant STRANGER_KEY = 0xBAD;
    uint256 private constant NOW = 1_800_000_000;
    uint40 private constant DELAY = 1 hours;
    address private constant RECEIVER = address(0xBEEF);
    address private constant RECEIVER_2 = address(0xCAFE);
    /// A payerAuthorizer other than the payer (the official client's default is the payer's own key).
    uint256 private constant PAYER_AUTHORIZER_KEY = 0xC0DE;

    TestUSD private token;
    X402ChannelEscrow private escrow;
    X402Erc3009DepositCollector private collector;
    address private payer;
    address private authorizer;

    function setUp() public {
        vm.warp(NOW);
        token = new TestUSD("USD Coin", "TUSD", "2");
        escrow = new X402ChannelEscrow();
        collector = new X402Erc3009DepositCollector(address(escrow));
        payer = vm.addr(PAYER_KEY);
        authorizer = vm.addr(AUTHORIZER_KEY);
        token.mint(payer, 1e12);
    }

    // ------------------------------------------------------------------------------------------------
    // Helpers

    function _config(bytes32 salt) private view returns (X402ChannelEscrow.ChannelConfig memory) {
        return X402ChannelEscrow.ChannelConfig({
            payer: payer,
            payerAuthorizer: payer,
            receiver: RECEIVER,
            receiverAuthorizer: authorizer,
            token: address(token),
            withdrawDelay: DELAY,
            salt: salt
        });
    }

    function _sig(uint256 key, bytes32 digest) private pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// The collectorData the official client's ERC-3009 authorization becomes (salt `depositSalt`).
    function _collectorData(
        uint256 key,
        X402ChannelEscrow.ChannelConfig memory config,
        uint256 amount,
        uint256 depositSalt
    ) private view returns (bytes memory) {
        bytes32 nonce = keccak256(abi.encode(escrow.getChannelId(config), depositSalt));
        uint256 validBefore = NOW + 3600;
        bytes32 structHash =
            keccak256(abi.encode(RECEIVE_TYPEHASH, vm.addr(key), address(collector), amount, 0, validBefore, nonce));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", TestUSD(config.token).DOMAIN_SEPARATOR(), structHash));
        return abi.encode(uint256(0), validBefore, depositSalt, _sig(key, digest));
    }

    function _deposit(X402ChannelEscrow.ChannelConfig memory config, uint128 amount, uint256 depositSalt) private {
        escrow.deposit(config, amount, address(collector), _collectorData(PAYER_KEY, config, amount, depositSalt));
    }

    function _claims(X402ChannelEscrow.ChannelConfig memory config, uint128 max, uint128 total, uint256 voucherKey)
        private
        view
        returns (X402ChannelEscrow.VoucherClaim[] memory claims)
    {
        claims = new X402ChannelEscrow.VoucherClaim[](1);
        claims[0] = _claim(config, max, total, voucherKey);
    }

    function _claim(X402ChannelEscrow.ChannelConfig memory config, uint128 max, uint128 total, uint256 voucherKey)
        private
        view
        returns (X402ChannelEscrow.VoucherClaim memory)
    {
        bytes memory voucherSig = _sig(voucherKey, escrow.getVoucherDigest(escrow.getChannelId(config), max));
        return X402ChannelEscrow.VoucherClaim({
            voucher: X402ChannelEscrow.Voucher({channel: config, maxClaimableAmount: max}),
            signature: voucherSig,
            totalClaimed: total
        });
    }

    function _batchSig(X402ChannelEscrow.VoucherClaim[] memory claims, uint256 key) private view returns (bytes memory) {
        return _sig(key, escrow.getClaimBatchDigest(claims));
    }

    function _claimSigned(X402ChannelEscrow.VoucherClaim[] memory claims) private {
        escrow.claimWithSignature(claims, _batchSig(claims, AUTHORIZER_KEY));
    }

    function _refundSig(bytes32 id, uint256 nonce, uint128 amount, uint256 key) private view returns (bytes memory) {
        return _sig(key, escrow.getRefundDigest(id, nonce, amount));
    }

    function _channel(bytes32 id) private view returns (uint256 balance, uint256 totalClaimed) {
        (uint128 b, uint128 c) = escrow.channels(id);
        return (b, c);
    }

    function _receiver() private view returns (uint256 totalClaimed, uint256 totalSettled) {
        (uint128 c, uint128 s) = escrow.receivers(RECEIVER, address(token));
        return (c, s);
    }

    // ------------------------------------------------------------------------------------------------
    // EIP-712: the digests are the standard ones over the type strings the official package signs

    function test_digestsFollowTheTypeStrings() public view {
        X402ChannelEscrow.ChannelConfig memory config = _config(bytes32(uint256(7)));
        bytes32 separator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("x402 Batch Settlement"),
                keccak256("1"),
                block.chainid,
                address(escrow)
            )
        );
        assertEq(uint256(escrow.domainSeparator()), uint256(separator), "domain separator");
        bytes32 configHash = keccak256(
            abi.encode(
                keccak256(
                    "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)"
                ),
                config.payer,
                config.payerAuthorizer,
                config.receiver,
                config.receiverAuthorizer,
                config.token,
                config.withdrawDelay,
                config.salt
            )
        );
        bytes32 id = keccak256(abi.encodePacked("\x19\x01", separator, configHash));
        assertEq(uint256(escrow.getChannelId(config)), uint256(id), "channel id");
        bytes32 voucher = keccak256(
            abi.encodePacked(
                "\x19\x01",
                separator,
                keccak256(abi.encode(keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)"), id, 5))
            )
        );
        assertEq(uint256(escrow.getVoucherDigest(id, 5)), uint256(voucher), "voucher digest");
        bytes32 entryType = keccak256("ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)");
        bytes32 batchType = keccak256(
            "ClaimBatch(ClaimEntry[] claims)ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
        );
        X402ChannelEscrow.VoucherClaim[] memory claims = new X402ChannelEscrow.VoucherClaim[](2);
        claims[0] = _claim(config, 5, 4, PAYER_KEY);
        claims[1] = _claim(_config(bytes32(uint256(8))), 9, 9, PAYER_KEY);
        bytes32 id2 = escrow.getChannelId(claims[1].voucher.channel);
        bytes32 entries = keccak256(
            abi.encodePacked(keccak256(abi.encode(entryType, id, 5, 4)), keccak256(abi.encode(entryType, id2, 9, 9)))
        );
        bytes32 batch = keccak256(abi.encodePacked("\x19\x01", separator, keccak256(abi.encode(batchType, entries))));
        assertEq(uint256(escrow.getClaimBatchDigest(claims)), uint256(batch), "claim batch digest");
    }

    // ------------------------------------------------------------------------------------------------
    // The happy path: deposit, claim, settle

    function test_depositClaimSettle() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 1000, "balance after deposit");
        assertEq(claimed, 0, "claimed after deposit");
        assertEq(token.balanceOf(address(escrow)), 1000, "escrow holds the deposit");
        assertEq(token.balanceOf(address(collector)), 0, "collector keeps nothing");

        _claimSigned(_claims(config, 300, 250, PAYER_KEY));
        (balance, claimed) = _channel(id);
        assertEq(balance, 1000, "claims move no balance");
        assertEq(claimed, 250, "claimed = the authorised total, below the voucher");
        (uint256 receiverClaimed, uint256 settled) = _receiver();
        assertEq(receiverClaimed, 250, "receiver credited");
        assertEq(settled, 0, "nothing settled yet");
        assertEq(token.balanceOf(RECEIVER), 0, "claims move no tokens");

        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 250, "settle pays the claimed");
        assertEq(token.balanceOf(address(escrow)), 750, "the rest stays escrowed");
        (receiverClaimed, settled) = _receiver();
        assertEq(settled, 250, "settled recorded");

        // A later voucher raises the claim by the difference only.
        _claimSigned(_claims(config, 600, 600, PAYER_KEY));
        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 600, "second settle pays the difference");
    }

    function test_topUpAddsToTheBalance() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        _deposit(config, 500, 2);
        (uint256 balance,) = _channel(escrow.getChannelId(config));
        assertEq(balance, 1500, "two deposits");
    }

    function test_oneBatchManyChannelsCreditsTheReceiverOnce() public {
        X402ChannelEscrow.VoucherClaim[] memory claims = new X402ChannelEscrow.VoucherClaim[](3);
        for (uint256 i = 0; i < 3; ++i) {
            X402ChannelEscrow.ChannelConfig memory config = _config(bytes32(i));
            _deposit(config, 100, i);
            claims[i] = _claim(config, uint128(10 * (i + 1)), uint128(10 * (i + 1)), PAYER_KEY);
        }
        _claimSigned(claims);
        (uint256 receiverClaimed,) = _receiver();
        assertEq(receiverClaimed, 60, "10 + 20 + 30");
        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 60, "one transfer of all three");
    }

    function test_claimByTheReceiverAuthorizerItself() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 100, 100, PAYER_KEY);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNotReceiverAuthorizer.selector, 0, address(this))
        );
        escrow.claim(claims);
        vm.prank(authorizer);
        escrow.claim(claims);
        (, uint256 claimed) = _channel(escrow.getChannelId(config));
        assertEq(claimed, 100, "claimed by the authorizer");
    }

    function test_voucherOfAContractPayerIsCheckedByErc1271WhenNoPayerAuthorizer() public {
        OwnedWallet wallet = new OwnedWallet(vm.addr(PAYER_KEY));
        GiftCollector gift = new GiftCollector();
        token.mint(address(gift), 1000);
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.payer = address(wallet);
        config.payerAuthorizer = address(0);
        bytes32 id = escrow.getChannelId(config);
        escrow.deposit(config, 1000, address(gift), "");
        X402ChannelEscrow.VoucherClaim[] memory forged = _claims(config, 100, 100, STRANGER_KEY);
        bytes memory forgedBatchSig = _batchSig(forged, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelInvalidVoucherSignature.selector, id));
        escrow.claimWithSignature(forged, forgedBatchSig);
        _claimSigned(_claims(config, 100, 100, PAYER_KEY));
        (, uint256 claimed) = _channel(id);
        assertEq(claimed, 100, "wallet-approved voucher");
    }

    function test_withoutPayerAuthorizerAnEoaPayerSignsItself() public {
        // payerAuthorizer zero and an EOA payer: the payer's own ECDSA signature is accepted.
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.payerAuthorizer = address(0);
        _deposit(config, 1000, 1);
        _claimSigned(_claims(config, 100, 100, PAYER_KEY));
        (, uint256 claimed) = _channel(escrow.getChannelId(config));
        assertEq(claimed, 100, "payer-signed voucher");
    }

    // ------------------------------------------------------------------------------------------------
    // Bad paths: claims

    function test_forgedVoucherIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 300, STRANGER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelInvalidVoucherSignature.selector, id));
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_voucherForAnotherAmountIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 300, PAYER_KEY);
        claims[0].voucher.maxClaimableAmount = 900; // the signature was over 300
        claims[0].totalClaimed = 900;
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelInvalidVoucherSignature.selector, id));
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_claimAboveTheVoucherIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 301, PAYER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelClaimExceedsVoucher.selector, id, 301, 300)
        );
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_claimAboveTheBalanceIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 5000, 1001, PAYER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelClaimExceedsBalance.selector, id, 1001, 1000)
        );
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_claimNotSignedByTheReceiverAuthorizerIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 300, PAYER_KEY);
        bytes memory forged = _batchSig(claims, STRANGER_KEY);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidAuthorizerSignature.selector);
        escrow.claimWithSignature(claims, forged);
        // The authorizer signed 200; 300 is submitted.
        X402ChannelEscrow.VoucherClaim[] memory signed = _claims(config, 300, 200, PAYER_KEY);
        bytes memory batchSig = _batchSig(signed, AUTHORIZER_KEY);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidAuthorizerSignature.selector);
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_batchWithTwoAuthorizersIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory other = _config(bytes32(uint256(1)));
        other.receiverAuthorizer = vm.addr(STRANGER_KEY);
        X402ChannelEscrow.VoucherClaim[] memory claims = new X402ChannelEscrow.VoucherClaim[](2);
        claims[0] = _claim(_config(0), 1, 1, PAYER_KEY);
        claims[1] = _claim(other, 1, 1, PAYER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelAuthorizerMismatch.selector, 1));
        escrow.claimWithSignature(claims, batchSig);
    }

    function test_replayedClaimMovesNothing() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 300, PAYER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        escrow.claimWithSignature(claims, batchSig);
        escrow.claimWithSignature(claims, batchSig);
        // An older, lower voucher neither.
        _claimSigned(_claims(config, 100, 100, PAYER_KEY));
        (, uint256 claimed) = _channel(id);
        assertEq(claimed, 300, "claimed once");
        (uint256 receiverClaimed,) = _receiver();
        assertEq(receiverClaimed, 300, "credited once");
    }

    // ------------------------------------------------------------------------------------------------
    // Bad paths: settle

    function test_doubleSettleIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        escrow.settle(RECEIVER, address(token));
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNothingToSettle.selector, RECEIVER, address(token))
        );
        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 300, "paid once");
        assertEq(token.balanceOf(address(escrow)), 700, "the unclaimed stays");
    }

    function test_settleBeforeAnyClaimIsRefused() public {
        _deposit(_config(0), 1000, 1);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNothingToSettle.selector, RECEIVER, address(token))
        );
        escrow.settle(RECEIVER, address(token));
    }

    // ------------------------------------------------------------------------------------------------
    // Bad paths: deposits

    function test_depositAuthorizationIsBoundToItsChannel() public {
        X402ChannelEscrow.ChannelConfig memory signedFor = _config(0);
        X402ChannelEscrow.ChannelConfig memory other = _config(bytes32(uint256(1)));
        bytes memory data = _collectorData(PAYER_KEY, signedFor, 1000, 1);
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        escrow.deposit(other, 1000, address(collector), data);
        escrow.deposit(signedFor, 1000, address(collector), data);
        // and is used once
        vm.expectRevert();
        escrow.deposit(signedFor, 1000, address(collector), data);
        (uint256 balance,) = _channel(escrow.getChannelId(signedFor));
        assertEq(balance, 1000, "one deposit");
    }

    function test_depositForAnotherAmountIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes memory data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        escrow.deposit(config, 2000, address(collector), data);
    }

    function test_collectorServesOnlyTheEscrow() public {
        bytes memory data = _collectorData(PAYER_KEY, _config(0), 1000, 1);
        bytes32 id = escrow.getChannelId(_config(0));
        vm.expectRevert(
            abi.encodeWithSelector(X402Erc3009DepositCollector.X402CollectorOnlyEscrow.selector, address(this))
        );
        collector.collect(payer, address(token), 1000, id, data);
    }

    function test_withdrawDelayOutOfRangeIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.withdrawDelay = 15 minutes - 1;
        bytes memory data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelWithdrawDelayOutOfRange.selector, 15 minutes - 1)
        );
        escrow.deposit(config, 1000, address(collector), data);
        config.withdrawDelay = 30 days + 1;
        data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelWithdrawDelayOutOfRange.selector, 30 days + 1)
        );
        escrow.deposit(config, 1000, address(collector), data);
    }

    function test_configWithoutAReceiverSideIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.receiverAuthorizer = address(0);
        bytes memory data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidConfig.selector);
        escrow.deposit(config, 1000, address(collector), data);
        config = _config(0);
        config.receiver = address(escrow);
        data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidConfig.selector);
        escrow.deposit(config, 1000, address(collector), data);
    }

    function test_collectorRefusesATokenWhoseAuthorizationMovesNothing() public {
        // Tokens sitting in the collector (sent there by mistake) and a token whose fallback takes any call: the
        // authorization "succeeds", and without the collector's own check its stray tokens would fund this channel.
        FallbackToken weth = new FallbackToken();
        weth.mint(address(collector), 777);
        address thief = address(0x7777);
        X402ChannelEscrow.ChannelConfig memory config = X402ChannelEscrow.ChannelConfig({
            payer: thief,
            payerAuthorizer: address(0),
            receiver: thief,
            receiverAuthorizer: thief,
            token: address(weth),
            withdrawDelay: DELAY,
            salt: 0
        });
        bytes memory data = abi.encode(uint256(0), uint256(0), uint256(0), new bytes(65));
        vm.expectRevert(
            abi.encodeWithSelector(X402Erc3009DepositCollector.X402CollectorReceiveMismatch.selector, 777, 0)
        );
        escrow.deposit(config, 777, address(collector), data);
        assertEq(weth.balanceOf(address(collector)), 777, "the stray tokens stay");
        assertEq(weth.balanceOf(address(escrow)), 0, "nothing deposited");
    }

    function test_aChannelPayingItsOwnCollectorIsRefused() public {
        // Its claims would be settled into the collector, where nobody could take them.
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.receiver = address(collector);
        bytes memory data = _collectorData(PAYER_KEY, config, 1000, 1);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidConfig.selector);
        escrow.deposit(config, 1000, address(collector), data);
    }

    function test_collectorThatMovesNothingCreditsNothing() public {
        LyingCollector liar = new LyingCollector();
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelDepositMismatch.selector, 1000, 0));
        escrow.deposit(_config(0), 1000, address(liar), "");
    }

    function test_collectorCannotReenter() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        ReenteringCollector hostile = new ReenteringCollector(escrow, RECEIVER);
        token.mint(address(hostile), 1000);
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        escrow.deposit(config, 1000, address(hostile), "");
    }

    // ------------------------------------------------------------------------------------------------
    // Refunds

    function test_refundWithSignatureIsUsedOnce() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        uint256 payerBefore = token.balanceOf(payer);
        bytes memory refundSig = _refundSig(id, 0, 200, AUTHORIZER_KEY);
        escrow.refundWithSignature(config, 200, 0, refundSig);
        assertEq(token.balanceOf(payer), payerBefore + 200, "refunded");
        assertEq(escrow.refundNonce(id), 1, "nonce used");
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelRefundNonceMismatch.selector, 1, 0));
        escrow.refundWithSignature(config, 200, 0, refundSig);
        // The same signature with the nonce it does not cover.
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidRefundSignature.selector);
        escrow.refundWithSignature(config, 200, 1, refundSig);
        assertEq(token.balanceOf(payer), payerBefore + 200, "refunded once");
    }

    function test_refundSignedByAStrangerIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        bytes memory forged = _refundSig(id, 0, 1000, STRANGER_KEY);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidRefundSignature.selector);
        escrow.refundWithSignature(config, 1000, 0, forged);
    }

    function test_refundIsCappedAtTheUnclaimed() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        uint256 payerBefore = token.balanceOf(payer);
        escrow.refundWithSignature(config, 5000, 0, _refundSig(id, 0, 5000, AUTHORIZER_KEY));
        assertEq(token.balanceOf(payer), payerBefore + 700, "only the unclaimed");
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 300, "claimed funds stay");
        assertEq(claimed, 300, "claimed unchanged");
        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 300, "the receiver is still paid");
        assertEq(token.balanceOf(address(escrow)), 0, "nothing left");
        bytes memory again = _refundSig(id, 1, 1, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNothingToRefund.selector, id));
        escrow.refundWithSignature(config, 1, 1, again);
    }

    function test_refundByTheReceiverOnly() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNotReceiver.selector, payer));
        vm.prank(payer);
        escrow.refund(config, 100);
        vm.prank(RECEIVER);
        escrow.refund(config, 100);
        assertEq(escrow.refundNonce(id), 1, "a plain refund also moves the nonce");
        (uint256 balance,) = _channel(id);
        assertEq(balance, 900, "refunded 100");
    }

    function test_claimThenRefundInOneMulticall() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 400, 400, PAYER_KEY);
        bytes[] memory calls = new bytes[](2);
        calls[0] = abi.encodeCall(escrow.claimWithSignature, (claims, _batchSig(claims, AUTHORIZER_KEY)));
        calls[1] = abi.encodeCall(escrow.refundWithSignature, (config, 1000, 0, _refundSig(id, 0, 1000, AUTHORIZER_KEY)));
        uint256 payerBefore = token.balanceOf(payer);
        escrow.multicall(calls);
        assertEq(token.balanceOf(payer), payerBefore + 600, "refund after the claim");
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 400, "balance = claimed");
        assertEq(claimed, 400, "claimed");
    }

    // ------------------------------------------------------------------------------------------------
    // Withdrawals

    function test_withdrawBeforeTheDelayIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        vm.prank(payer);
        escrow.initiateWithdraw(config, 500);
        vm.warp(NOW + DELAY - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                X402ChannelEscrow.X402ChannelWithdrawDelayNotElapsed.selector, NOW + DELAY, NOW + DELAY - 1
            )
        );
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        vm.warp(NOW + DELAY);
        uint256 payerBefore = token.balanceOf(payer);
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        assertEq(token.balanceOf(payer), payerBefore + 500, "withdrawn");
        (uint256 balance,) = _channel(id);
        assertEq(balance, 500, "half left");
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNoPendingWithdrawal.selector, id));
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
    }

    function test_withdrawIsBoundedByClaimsMadeDuringTheDelay() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        vm.prank(payer);
        escrow.initiateWithdraw(config, 1000);
        _claimSigned(_claims(config, 400, 400, PAYER_KEY));
        vm.warp(NOW + DELAY);
        uint256 payerBefore = token.balanceOf(payer);
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        assertEq(token.balanceOf(payer), payerBefore + 600, "the unclaimed only");
        escrow.settle(RECEIVER, address(token));
        assertEq(token.balanceOf(RECEIVER), 400, "the receiver keeps its claim");
        assertEq(token.balanceOf(address(escrow)), 0, "nothing left");
    }

    function test_withdrawByThePayerSideOnly() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        _deposit(config, 1000, 1);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNotPayer.selector, RECEIVER));
        vm.prank(RECEIVER);
        escrow.initiateWithdraw(config, 1000);
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelWithdrawExceedsUnclaimed.selector, 1001, 1000)
        );
        vm.prank(payer);
        escrow.initiateWithdraw(config, 1001);
    }

    // ------------------------------------------------------------------------------------------------
    // A payerAuthorizer other than the payer: its key alone signs vouchers; both may withdraw

    function _configWithPayerAuthorizer(bytes32 salt) private view returns (X402ChannelEscrow.ChannelConfig memory) {
        X402ChannelEscrow.ChannelConfig memory config = _config(salt);
        config.payerAuthorizer = vm.addr(PAYER_AUTHORIZER_KEY);
        return config;
    }

    function test_withAPayerAuthorizerThePayersVoucherIsRefused() public {
        X402ChannelEscrow.ChannelConfig memory config = _configWithPayerAuthorizer(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory byPayer = _claims(config, 300, 300, PAYER_KEY);
        bytes memory batchSig = _batchSig(byPayer, AUTHORIZER_KEY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelInvalidVoucherSignature.selector, id));
        escrow.claimWithSignature(byPayer, batchSig);
        _claimSigned(_claims(config, 300, 300, PAYER_AUTHORIZER_KEY));
        (, uint256 claimed) = _channel(id);
        assertEq(claimed, 300, "the authorizer's voucher");
        (uint256 receiverClaimed,) = _receiver();
        assertEq(receiverClaimed, 300, "credited");
    }

    function test_thePayerAuthorizerInitiatesAndFinalizesAWithdrawal() public {
        X402ChannelEscrow.ChannelConfig memory config = _configWithPayerAuthorizer(0);
        address payerAuthorizer = vm.addr(PAYER_AUTHORIZER_KEY);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        uint256 payerBefore = token.balanceOf(payer);
        vm.prank(payerAuthorizer);
        escrow.initiateWithdraw(config, 400);
        vm.warp(NOW + DELAY);
        vm.prank(payerAuthorizer);
        escrow.finalizeWithdraw(config);
        assertEq(token.balanceOf(payer), payerBefore + 400, "paid to the payer");
        assertEq(token.balanceOf(payerAuthorizer), 0, "never to the authorizer");
        // The payer itself still may.
        vm.prank(payer);
        escrow.initiateWithdraw(config, 600);
        vm.warp(NOW + 2 * DELAY);
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        assertEq(token.balanceOf(payer), payerBefore + 1000, "all of it back");
        (uint256 balance,) = _channel(id);
        assertEq(balance, 0, "empty");
    }

    function test_withoutAPayerAuthorizerTheZeroAddressIsNotThePayer() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.payerAuthorizer = address(0);
        _deposit(config, 1000, 1);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNotPayer.selector, address(0)));
        vm.prank(address(0));
        escrow.initiateWithdraw(config, 1000);
    }

    function test_theReceiverAuthorizerRefunds() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        uint256 payerBefore = token.balanceOf(payer);
        vm.prank(authorizer);
        escrow.refund(config, 100);
        assertEq(token.balanceOf(payer), payerBefore + 100, "refunded to the payer");
        (uint256 balance,) = _channel(id);
        assertEq(balance, 900, "refunded 100");
    }

    // ------------------------------------------------------------------------------------------------
    // A refund that closes a channel clears its pending withdrawal

    function test_aRefundThatClosesTheChannelClearsItsPendingWithdrawal() public {
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        vm.prank(payer);
        escrow.initiateWithdraw(config, 700);
        // A refund that leaves some unclaimed escrow keeps the request.
        escrow.refundWithSignature(config, 100, 0, _refundSig(id, 0, 100, AUTHORIZER_KEY));
        (uint128 pendingAmount, uint40 initiatedAt) = escrow.pendingWithdrawals(id);
        assertEq(pendingAmount, 700, "still pending");
        assertEq(initiatedAt, NOW, "since then");
        // The one that returns the rest closes the channel and drops it.
        escrow.refundWithSignature(config, 600, 1, _refundSig(id, 1, 600, AUTHORIZER_KEY));
        (pendingAmount, initiatedAt) = escrow.pendingWithdrawals(id);
        assertEq(pendingAmount, 0, "no pending amount");
        assertEq(initiatedAt, 0, "no pending request");
        // A top-up after the delay cannot be taken by the dropped request.
        _deposit(config, 1000, 2);
        vm.warp(NOW + DELAY);
        vm.expectRevert(abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNoPendingWithdrawal.selector, id));
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 1300, "the claimed 300 and the top-up");
        assertEq(claimed, 300, "claimed unchanged");
    }

    // ------------------------------------------------------------------------------------------------
    // One batch, two tokens and two receivers, one channel twice: credited per (receiver, token)

    function test_batchMixingTokensAndReceiversCreditsEachPair() public {
        TestUSD token2 = new TestUSD("Other USD", "OUSD", "2");
        token2.mint(payer, 1e12);
        X402ChannelEscrow.ChannelConfig memory a = _config(bytes32(uint256(1)));
        X402ChannelEscrow.ChannelConfig memory b = _config(bytes32(uint256(2)));
        b.token = address(token2);
        X402ChannelEscrow.ChannelConfig memory a2 = _config(bytes32(uint256(3)));
        X402ChannelEscrow.ChannelConfig memory c = _config(bytes32(uint256(4)));
        c.receiver = RECEIVER_2;
        _deposit(a, 100, 1);
        _deposit(b, 200, 1);
        _deposit(a2, 300, 1);
        _deposit(c, 400, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = new X402ChannelEscrow.VoucherClaim[](6);
        claims[0] = _claim(a, 100, 50, PAYER_KEY);
        claims[1] = _claim(b, 200, 200, PAYER_KEY);
        claims[2] = _claim(a2, 300, 300, PAYER_KEY);
        claims[3] = _claim(c, 70, 70, PAYER_KEY);
        claims[4] = _claim(a, 100, 100, PAYER_KEY); // channel a again: 50 more
        claims[5] = _claim(b, 150, 150, PAYER_KEY); // channel b again, below its claim: nothing
        _claimSigned(claims);
        (, uint256 channelAClaimed) = _channel(escrow.getChannelId(a));
        (, uint256 channelBClaimed) = _channel(escrow.getChannelId(b));
        assertEq(channelAClaimed, 100, "channel a at its second claim");
        assertEq(channelBClaimed, 200, "channel b at its first claim");
        (uint128 receiverToken,) = escrow.receivers(RECEIVER, address(token));
        (uint128 receiverToken2,) = escrow.receivers(RECEIVER, address(token2));
        (uint128 receiver2Token,) = escrow.receivers(RECEIVER_2, address(token));
        (uint128 receiver2Token2,) = escrow.receivers(RECEIVER_2, address(token2));
        assertEq(receiverToken, 400, "RECEIVER in token: 50 + 300 + 50");
        assertEq(receiverToken2, 200, "RECEIVER in token2: 200");
        assertEq(receiver2Token, 70, "RECEIVER_2 in token: 70");
        assertEq(receiver2Token2, 0, "RECEIVER_2 in token2: nothing");
        escrow.settle(RECEIVER, address(token));
        escrow.settle(RECEIVER, address(token2));
        escrow.settle(RECEIVER_2, address(token));
        vm.expectRevert(
            abi.encodeWithSelector(X402ChannelEscrow.X402ChannelNothingToSettle.selector, RECEIVER_2, address(token2))
        );
        escrow.settle(RECEIVER_2, address(token2));
        assertEq(token.balanceOf(RECEIVER), 400, "RECEIVER paid in token");
        assertEq(token2.balanceOf(RECEIVER), 200, "RECEIVER paid in token2");
        assertEq(token.balanceOf(RECEIVER_2), 70, "RECEIVER_2 paid in token");
        assertEq(token.balanceOf(address(escrow)), 100 + 300 + 400 - 470, "token: the unclaimed stays");
        assertEq(token2.balanceOf(address(escrow)), 0, "token2: all claimed and paid");
    }

    // ------------------------------------------------------------------------------------------------
    // A contract wallet (ERC-1271) as receiverAuthorizer

    function test_anErc1271ReceiverAuthorizerSignsClaimsAndRefunds() public {
        OwnedWallet wallet = new OwnedWallet(authorizer);
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        config.receiverAuthorizer = address(wallet);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, 1000, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, 300, 300, PAYER_KEY);
        bytes memory forged = _batchSig(claims, STRANGER_KEY);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidAuthorizerSignature.selector);
        escrow.claimWithSignature(claims, forged);
        escrow.claimWithSignature(claims, _batchSig(claims, AUTHORIZER_KEY));
        (, uint256 claimed) = _channel(id);
        assertEq(claimed, 300, "claimed on the wallet's word");
        // And as msg.sender.
        X402ChannelEscrow.VoucherClaim[] memory more = _claims(config, 400, 400, PAYER_KEY);
        vm.prank(address(wallet));
        escrow.claim(more);
        (, claimed) = _channel(id);
        assertEq(claimed, 400, "claimed by the wallet itself");
        bytes memory forgedRefund = _refundSig(id, 0, 100, STRANGER_KEY);
        vm.expectRevert(X402ChannelEscrow.X402ChannelInvalidRefundSignature.selector);
        escrow.refundWithSignature(config, 100, 0, forgedRefund);
        uint256 payerBefore = token.balanceOf(payer);
        escrow.refundWithSignature(config, 100, 0, _refundSig(id, 0, 100, AUTHORIZER_KEY));
        assertEq(token.balanceOf(payer), payerBefore + 100, "refunded on the wallet's word");
    }

    // ------------------------------------------------------------------------------------------------
    // A token that calls back into the escrow from its transfers: refused, the accounting intact

    function _reentrantChannel(ReentrantToken hostile, address receiver, bytes32 salt, uint128 amount)
        private
        returns (X402ChannelEscrow.ChannelConfig memory config)
    {
        config = _config(salt);
        config.token = address(hostile);
        config.receiver = receiver;
        GiftCollector gift = new GiftCollector();
        hostile.mint(address(gift), amount);
        escrow.deposit(config, amount, address(gift), "");
    }

    function _assertReentryRefused(ReentrantToken hostile) private view {
        assertTrue(hostile.reentryAttempted(), "the token called back");
        assertTrue(!hostile.reentrySucceeded(), "the call back was refused");
        assertEq(
            uint256(keccak256(hostile.reentryRevertData())),
            uint256(keccak256(abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector))),
            "by the reentrancy guard"
        );
    }

    function test_aTokenCannotReenterDuringSettle() public {
        ReentrantToken hostile = new ReentrantToken();
        X402ChannelEscrow.ChannelConfig memory first = _reentrantChannel(hostile, RECEIVER, bytes32(uint256(1)), 1000);
        X402ChannelEscrow.ChannelConfig memory second =
            _reentrantChannel(hostile, RECEIVER_2, bytes32(uint256(2)), 1000);
        X402ChannelEscrow.VoucherClaim[] memory claims = new X402ChannelEscrow.VoucherClaim[](2);
        claims[0] = _claim(first, 300, 300, PAYER_KEY);
        claims[1] = _claim(second, 200, 200, PAYER_KEY);
        _claimSigned(claims);
        // While RECEIVER is paid, the token tries to settle RECEIVER_2 (which would succeed on its own).
        hostile.arm(address(escrow), abi.encodeCall(escrow.settle, (RECEIVER_2, address(hostile))));
        escrow.settle(RECEIVER, address(hostile));
        _assertReentryRefused(hostile);
        assertEq(hostile.balanceOf(RECEIVER), 300, "RECEIVER paid");
        assertEq(hostile.balanceOf(RECEIVER_2), 0, "RECEIVER_2 not paid from within");
        (, uint128 settled2) = escrow.receivers(RECEIVER_2, address(hostile));
        assertEq(settled2, 0, "RECEIVER_2 unsettled");
        escrow.settle(RECEIVER_2, address(hostile));
        assertEq(hostile.balanceOf(RECEIVER_2), 200, "RECEIVER_2 paid on its own");
        assertEq(hostile.balanceOf(address(escrow)), 2000 - 500, "escrow holds balance - settled");
    }

    function test_aTokenCannotReenterDuringARefund() public {
        ReentrantToken hostile = new ReentrantToken();
        X402ChannelEscrow.ChannelConfig memory config = _reentrantChannel(hostile, RECEIVER, 0, 1000);
        bytes32 id = escrow.getChannelId(config);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        bytes memory nextRefund = _refundSig(id, 1, 100, AUTHORIZER_KEY);
        // While the payer is refunded, the token submits the next signed refund (valid on its own).
        hostile.arm(address(escrow), abi.encodeCall(escrow.refundWithSignature, (config, 100, 1, nextRefund)));
        escrow.refundWithSignature(config, 200, 0, _refundSig(id, 0, 200, AUTHORIZER_KEY));
        _assertReentryRefused(hostile);
        assertEq(hostile.balanceOf(payer), 200, "refunded once");
        assertEq(escrow.refundNonce(id), 1, "one nonce used");
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 800, "1000 - 200");
        assertEq(claimed, 300, "claims untouched");
        escrow.refundWithSignature(config, 100, 1, nextRefund);
        assertEq(hostile.balanceOf(payer), 300, "the next refund on its own");
        // A plain refund by the receiver, while the token tries to settle it (valid on its own).
        hostile.arm(address(escrow), abi.encodeCall(escrow.settle, (RECEIVER, address(hostile))));
        vm.prank(RECEIVER);
        escrow.refund(config, 50);
        _assertReentryRefused(hostile);
        assertEq(hostile.balanceOf(payer), 350, "the plain refund");
        assertEq(hostile.balanceOf(RECEIVER), 0, "not paid from within");
        escrow.settle(RECEIVER, address(hostile));
        assertEq(hostile.balanceOf(RECEIVER), 300, "paid on its own");
        assertEq(hostile.balanceOf(address(escrow)), 650 - 300, "escrow holds balance - settled");
    }

    function test_aTokenCannotReenterDuringFinalizeWithdraw() public {
        ReentrantToken hostile = new ReentrantToken();
        X402ChannelEscrow.ChannelConfig memory config = _reentrantChannel(hostile, RECEIVER, 0, 1000);
        bytes32 id = escrow.getChannelId(config);
        _claimSigned(_claims(config, 300, 300, PAYER_KEY));
        vm.prank(payer);
        escrow.initiateWithdraw(config, 700);
        vm.warp(NOW + DELAY);
        // While the payer is paid, the token tries to settle the receiver (which would succeed on its own).
        hostile.arm(address(escrow), abi.encodeCall(escrow.settle, (RECEIVER, address(hostile))));
        vm.prank(payer);
        escrow.finalizeWithdraw(config);
        _assertReentryRefused(hostile);
        assertEq(hostile.balanceOf(payer), 700, "withdrawn");
        assertEq(hostile.balanceOf(RECEIVER), 0, "not paid from within");
        (uint256 balance, uint256 claimed) = _channel(id);
        assertEq(balance, 300, "the claimed stays");
        assertEq(claimed, 300, "claims untouched");
        escrow.settle(RECEIVER, address(hostile));
        assertEq(hostile.balanceOf(RECEIVER), 300, "paid on its own");
        assertEq(hostile.balanceOf(address(escrow)), 0, "nothing left");
    }

    // ------------------------------------------------------------------------------------------------
    // Fuzz: whatever the order of amounts, claimed ≤ balance and the escrow holds Σ balance − Σ settled

    function testFuzz_accountingHolds(uint128 depositAmount, uint128 voucher, uint128 claimAmount, uint128 refundAmount)
        public
    {
        depositAmount = uint128(bound(depositAmount, 1, 1e12));
        voucher = uint128(bound(voucher, 1, 2e12));
        claimAmount = uint128(bound(claimAmount, 1, voucher));
        refundAmount = uint128(bound(refundAmount, 1, 2e12));
        X402ChannelEscrow.ChannelConfig memory config = _config(0);
        bytes32 id = escrow.getChannelId(config);
        _deposit(config, depositAmount, 1);
        X402ChannelEscrow.VoucherClaim[] memory claims = _claims(config, voucher, claimAmount, PAYER_KEY);
        bytes memory batchSig = _batchSig(claims, AUTHORIZER_KEY);
        if (claimAmount > depositAmount) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    X402ChannelEscrow.X402ChannelClaimExceedsBalance.selector, id, claimAmount, depositAmount
                )
            );
            escrow.claimWithSignature(claims, batchSig);
            claimAmount = 0;
        } else {
            escrow.claimWithSignature(claims, batchSig);
            escrow.settle(RECEIVER, address(token));
        }
        uint256 unclaimed = depositAmount - claimAmount;
        if (unclaimed > 0) {
            escrow.refundWithSignature(config, refundAmount, 0, _refundSig(id, 0, refundAmount, AUTHORIZER_KEY));
        }
        (uint256 balance, uint256 claimed) = _channel(id);
        uint256 refunded = refundAmount < unclaimed ? refundAmount : unclaimed;
        assertEq(claimed, claimAmount, "claimed");
        assertLe(claimed, balance, "claimed <= balance");
        assertEq(balance, depositAmount - refunded, "balance = deposits - refunds");
        (, uint256 settled) = _receiver();
        assertEq(token.balanceOf(address(escrow)), balance - settled, "escrow holds balance - settled");
        assertEq(token.balanceOf(RECEIVER), settled, "receiver holds the settled");
    }
}
