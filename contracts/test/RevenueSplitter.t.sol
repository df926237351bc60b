// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {RevenueSplitter} from "../RevenueSplitter.sol";
import {TestUSD} from "../TestUSD.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {ReentrancyGuard} from "../lib/ReentrancyGuard.sol";
import {CheatTest, Vm} from "./Vm.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {FalseReturningToken, FeeOnTransferToken, NoReturnToken, ReentrantToken} from "./HostileTokens.sol";

contract RevenueSplitterTest is CheatTest {
    bytes32 private constant RECEIVE_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 private constant CANCEL_TYPEHASH = keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");
    uint256 private constant PAYER_KEY = 0xA11CE;
    uint256 private constant OTHER_KEY = 0xB0B;

    TestUSD private token;
    RevenueSplitter private splitter;
    address private payer;

    function setUp() public {
        token = new TestUSD("USD Coin", "TUSD", "2");
        splitter = new RevenueSplitter();
        payer = vm.addr(PAYER_KEY);
        token.mint(payer, 1e30);
        vm.prank(payer);
        token.approve(address(splitter), type(uint256).max);
        vm.warp(1_800_000_000);
    }

    // ---------------------------------------------------------------------------------------------
    // helpers

    /// @dev `count` ascending recipients with pseudo-random non-zero shares that sum to 10,000.
    function _split(uint256 count, uint256 seed)
        private
        pure
        returns (address[] memory recipients, uint16[] memory basisPoints)
    {
        recipients = new address[](count);
        basisPoints = new uint16[](count);
        uint256 left = 10_000;
        for (uint256 i = 0; i < count; ++i) {
            recipients[i] = address(uint160(0x1000 + i * 0x100 + (uint256(keccak256(abi.encode(seed, i))) % 0x100)));
            if (i == count - 1) {
                basisPoints[i] = uint16(left);
            } else {
                // keep at least 1 bp for every later recipient
                uint256 room = left - (count - 1 - i);
                uint256 bps = 1 + (uint256(keccak256(abi.encode(seed, i, "bps"))) % room);
                if (bps > room) bps = room;
                basisPoints[i] = uint16(bps);
                left -= bps;
            }
        }
    }

    function _create(uint256 count, uint256 seed)
        private
        returns (bytes32 splitId, address[] memory recipients, uint16[] memory basisPoints)
    {
        (recipients, basisPoints) = _split(count, seed);
        splitId = splitter.createSplit(recipients, basisPoints);
    }

    function _pay(bytes32 splitId, uint256 amount) private {
        vm.prank(payer);
        splitter.pay(splitId, address(token), amount, bytes32("ref"));
    }

    function _signReceive(uint256 key, address from, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce)
        private
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        bytes32 structHash =
            keccak256(abi.encode(RECEIVE_TYPEHASH, from, address(splitter), value, validAfter, validBefore, nonce));
        return vm.sign(key, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
    }

    function _payWithAuthorization(
        bytes32 splitId,
        uint256 key,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 ref
    ) private {
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(key, payer, value, validAfter, validBefore, splitter.authorizationNonceOf(splitId, ref));
        splitter.payWithAuthorization(splitId, address(token), payer, value, validAfter, validBefore, ref, v, r, s);
    }

    // ---------------------------------------------------------------------------------------------
    // splits

    function test_createSplitTwiceIsHarmless() public {
        (bytes32 id, address[] memory recipients, uint16[] memory basisPoints) = _create(3, 1);
        assertEq(uint256(splitter.createSplit(recipients, basisPoints)), uint256(id), "same id");
        assertEq(splitter.recipientCountOf(id), 3, "count");
        assertEq(uint256(splitter.splitIdOf(recipients, basisPoints)), uint256(keccak256(abi.encode(recipients, basisPoints))), "id is the hash");
        uint16[] memory stored = splitter.basisPointsOf(id);
        for (uint256 i = 0; i < 3; ++i) assertEq(stored[i], basisPoints[i], "shares stored");
    }

    function test_createSplitRejectsBadDefinitions() public {
        address[] memory two = new address[](2);
        two[0] = address(0x20);
        two[1] = address(0x10);
        uint16[] memory halves = new uint16[](2);
        halves[0] = 5000;
        halves[1] = 5000;
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterRecipientsNotAscending.selector, 1));
        splitter.createSplit(two, halves);

        two[1] = address(0x20); // duplicate
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterRecipientsNotAscending.selector, 1));
        splitter.createSplit(two, halves);

        two[0] = address(0);
        two[1] = address(0x20);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterRecipientsNotAscending.selector, 0));
        splitter.createSplit(two, halves);

        two[0] = address(0x10);
        halves[1] = 4999;
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterBasisPointsSum.selector, 9999, 10_000));
        splitter.createSplit(two, halves);

        halves[0] = 10_000;
        halves[1] = 0;
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterZeroBasisPoints.selector, 1));
        splitter.createSplit(two, halves);

        uint16[] memory one = new uint16[](1);
        one[0] = 10_000;
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterLengthMismatch.selector, 2, 1));
        splitter.createSplit(two, one);

        vm.expectRevert(RevenueSplitter.RevenueSplitterNoRecipients.selector);
        splitter.createSplit(new address[](0), new uint16[](0));

        uint256 max = splitter.RECIPIENTS_MAX();
        (address[] memory many, uint16[] memory manyShares) = _split(max + 1, 7);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterTooManyRecipients.selector, max + 1, max));
        splitter.createSplit(many, manyShares);
    }

    function test_largestSplitDistributes() public {
        uint256 max = splitter.RECIPIENTS_MAX();
        (bytes32 id,,) = _create(max, 3);
        _pay(id, 1_000_000_007);
        splitter.distribute(id, address(token), bytes32(0));
        uint256 sum = 0;
        for (uint256 i = 0; i < max; ++i) sum += splitter.balanceOf(id, address(token), i);
        assertEq(sum, 1_000_000_007, "all distributed");
    }

    // ---------------------------------------------------------------------------------------------
    // pay and distribute

    function test_payRejectsUnknownSplitAndZero() public {
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterUnknownSplit.selector, bytes32("nope")));
        splitter.pay(bytes32("nope"), address(token), 1, bytes32(0));
        (bytes32 id,,) = _create(2, 1);
        vm.prank(payer);
        vm.expectRevert(RevenueSplitter.RevenueSplitterZeroAmount.selector);
        splitter.pay(id, address(token), 0, bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterNothingToDistribute.selector, id, address(token)));
        splitter.distribute(id, address(token), bytes32(0));
    }

    function test_remainderGoesToTheFirstRecipient() public {
        address[] memory recipients = new address[](3);
        recipients[0] = address(0x10);
        recipients[1] = address(0x20);
        recipients[2] = address(0x30);
        uint16[] memory basisPoints = new uint16[](3);
        basisPoints[0] = 3333;
        basisPoints[1] = 3333;
        basisPoints[2] = 3334;
        bytes32 id = splitter.createSplit(recipients, basisPoints);
        _pay(id, 100);
        assertEq(splitter.distribute(id, address(token), bytes32(0)), 100, "distributed");
        assertEq(splitter.balanceOf(id, address(token), 0), 34, "first: 33 + remainder 1");
        assertEq(splitter.balanceOf(id, address(token), 1), 33, "second");
        assertEq(splitter.balanceOf(id, address(token), 2), 33, "third");
    }

    /// Conservation and fairness of one distribution, for any amount and any split.
    function testFuzz_distributeLosesNothingAndGivesNobodyMore(uint256 amount, uint256 count, uint256 seed) public {
        count = bound(count, 1, 40);
        amount = bound(amount, 1, splitter.BALANCE_MAX());
        (bytes32 id,, uint16[] memory basisPoints) = _create(count, seed);
        _pay(id, amount);
        splitter.distribute(id, address(token), bytes32(0));
        uint256 sum = 0;
        for (uint256 i = 0; i < count; ++i) {
            uint256 balance = splitter.balanceOf(id, address(token), i);
            uint256 fair = amount * basisPoints[i] / 10_000;
            sum += balance;
            if (i == 0) {
                assertLe(fair, balance, "first gets at least its share");
                assertLe(balance, fair + count - 1, "remainder is less than the recipient count");
            } else {
                assertEq(balance, fair, "floor share");
            }
        }
        assertEq(sum, amount, "shares sum to the amount");
        assertEq(splitter.undistributedOf(id, address(token)), 0, "nothing left undistributed");
        assertEq(token.balanceOf(address(splitter)), amount, "tokens held = balances");
    }

    /// Withdrawals pay exactly the balance, leave the word warm, and conserve tokens across many rounds.
    function testFuzz_roundsOfPayDistributeWithdraw(uint256 seed, uint8 rounds) public {
        uint256 count = bound(seed, 1, 9);
        (bytes32 id, address[] memory recipients, uint16[] memory basisPoints) = _create(count, seed);
        uint256 paid = 0;
        uint256 withdrawn = 0;
        for (uint256 round = 0; round < bound(rounds, 1, 6); ++round) {
            uint256 amount = bound(uint256(keccak256(abi.encode(seed, round))), 1, 1e15);
            _pay(id, amount);
            paid += amount;
            splitter.distribute(id, address(token), bytes32(round));
            uint256 index = uint256(keccak256(abi.encode(seed, round, "i"))) % count;
            uint256 owed = splitter.balanceOf(id, address(token), index);
            if (owed > 0) {
                uint256 before = token.balanceOf(recipients[index]);
                withdrawn += splitter.withdraw(address(token), recipients, basisPoints, index);
                assertEq(token.balanceOf(recipients[index]) - before, owed, "withdraw pays the balance");
                assertEq(splitter.balanceOf(id, address(token), index), 0, "balance emptied");
            }
        }
        withdrawn += splitter.withdrawAll(address(token), recipients, basisPoints);
        assertEq(withdrawn, paid, "everything paid out");
        assertEq(token.balanceOf(address(splitter)), 0, "nothing stuck");
        (uint256 received, uint256 distributed) = splitter.totalsOf(id, address(token));
        assertEq(received, paid, "received total");
        assertEq(distributed, paid, "distributed total");
    }

    function test_withdrawRejectsNothingOwedAndWrongIndex() public {
        (bytes32 id, address[] memory recipients, uint16[] memory basisPoints) = _create(2, 5);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterNothingToWithdraw.selector, id, address(token), 1));
        splitter.withdraw(address(token), recipients, basisPoints, 1);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterIndexOutOfRange.selector, 2, 2));
        splitter.withdraw(address(token), recipients, basisPoints, 2);
        basisPoints[0] += 1;
        basisPoints[1] -= 1;
        bytes32 other = splitter.splitIdOf(recipients, basisPoints);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterUnknownSplit.selector, other));
        splitter.withdraw(address(token), recipients, basisPoints, 0);
    }

    function test_balanceOverflowRevertsUntilWithdrawn() public {
        (bytes32 id, address[] memory recipients, uint16[] memory basisPoints) = _create(1, 9);
        uint256 max = splitter.BALANCE_MAX();
        _pay(id, max);
        splitter.distribute(id, address(token), bytes32(0));
        _pay(id, 1);
        vm.expectRevert(
            abi.encodeWithSelector(RevenueSplitter.RevenueSplitterBalanceOverflow.selector, id, address(token), 0, max)
        );
        splitter.distribute(id, address(token), bytes32(0));
        assertEq(splitter.withdraw(address(token), recipients, basisPoints, 0), max, "withdraw the full balance");
        assertEq(splitter.distribute(id, address(token), bytes32(0)), 1, "then distribution resumes");
    }

    // ---------------------------------------------------------------------------------------------
    // payWithAuthorization

    function test_payWithAuthorizationAccruesAndCannotBeReplayed() public {
        (bytes32 id,,) = _create(2, 1);
        uint256 validBefore = block.timestamp + 600;
        bytes32 ref = keccak256("payment-1");
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(PAYER_KEY, payer, 5e6, 0, validBefore, splitter.authorizationNonceOf(id, ref));
        splitter.payWithAuthorization(id, address(token), payer, 5e6, 0, validBefore, ref, v, r, s);
        assertEq(splitter.undistributedOf(id, address(token)), 5e6, "accrued");
        assertTrue(token.authorizationState(payer, splitter.authorizationNonceOf(id, ref)), "nonce used");
        vm.expectRevert(
            abi.encodeWithSelector(ERC3009.ERC3009UsedAuthorization.selector, payer, splitter.authorizationNonceOf(id, ref))
        );
        splitter.payWithAuthorization(id, address(token), payer, 5e6, 0, validBefore, ref, v, r, s);
    }

    function testFuzz_authorizationOutsideItsWindowIsRejected(uint256 validAfter, uint256 validBefore) public {
        (bytes32 id,,) = _create(2, 1);
        validAfter = bound(validAfter, 0, block.timestamp * 2);
        validBefore = bound(validBefore, 0, block.timestamp * 2);
        // strict window as USDC: validAfter < now < validBefore
        vm.assume(!(validAfter < block.timestamp && block.timestamp < validBefore));
        bytes32 ref = keccak256(abi.encode(validAfter, validBefore));
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(PAYER_KEY, payer, 1e6, validAfter, validBefore, splitter.authorizationNonceOf(id, ref));
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009InvalidAuthorizationTime.selector, validAfter, validBefore));
        splitter.payWithAuthorization(id, address(token), payer, 1e6, validAfter, validBefore, ref, v, r, s);
    }

    function test_expiredAuthorizationIsRejected() public {
        (bytes32 id,,) = _create(2, 1);
        uint256 validBefore = 1_800_000_000 + 60; // a literal: via-IR may re-read TIMESTAMP after vm.warp
        bytes32 ref = keccak256("late");
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(PAYER_KEY, payer, 1e6, 0, validBefore, splitter.authorizationNonceOf(id, ref));
        vm.warp(validBefore);
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009InvalidAuthorizationTime.selector, 0, validBefore));
        splitter.payWithAuthorization(id, address(token), payer, 1e6, 0, validBefore, ref, v, r, s);
    }

    function test_cancelledAuthorizationIsRejected() public {
        (bytes32 id,,) = _create(2, 1);
        bytes32 ref = keccak256("cancelled");
        bytes32 nonce = splitter.authorizationNonceOf(id, ref);
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(
            PAYER_KEY,
            keccak256(
                abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), keccak256(abi.encode(CANCEL_TYPEHASH, payer, nonce)))
            )
        );
        token.cancelAuthorization(payer, nonce, cv, cr, cs);
        (uint8 v, bytes32 r, bytes32 s) = _signReceive(PAYER_KEY, payer, 1e6, 0, block.timestamp + 60, nonce);
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009UsedAuthorization.selector, payer, nonce));
        splitter.payWithAuthorization(id, address(token), payer, 1e6, 0, block.timestamp + 60, ref, v, r, s);
    }

    function testFuzz_wrongSignerIsRejected(uint256 key) public {
        key = bound(key, 1, 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140);
        vm.assume(key != PAYER_KEY);
        (bytes32 id,,) = _create(2, 1);
        bytes32 ref = keccak256(abi.encode("wrong", key));
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(key, payer, 1e6, 0, block.timestamp + 60, splitter.authorizationNonceOf(id, ref));
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        splitter.payWithAuthorization(id, address(token), payer, 1e6, 0, block.timestamp + 60, ref, v, r, s);
    }

    function test_signatureCannotBeRedirectedToAnotherSplitOrAmount() public {
        (bytes32 id,,) = _create(2, 1);
        (bytes32 attackerSplit,,) = _create(1, 99);
        bytes32 ref = keccak256("mine");
        uint256 validBefore = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(PAYER_KEY, payer, 1e6, 0, validBefore, splitter.authorizationNonceOf(id, ref));
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        splitter.payWithAuthorization(attackerSplit, address(token), payer, 1e6, 0, validBefore, ref, v, r, s);
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        splitter.payWithAuthorization(id, address(token), payer, 2e6, 0, validBefore, ref, v, r, s);
        splitter.payWithAuthorization(id, address(token), payer, 1e6, 0, validBefore, ref, v, r, s);
        assertEq(splitter.undistributedOf(id, address(token)), 1e6, "paid where signed");
        assertEq(splitter.undistributedOf(attackerSplit, address(token)), 0, "not redirected");
    }

    function test_payWithAuthorizationByOtherKeyForOwnAddressWorks() public {
        // a second payer with its own key signs for itself
        address other = vm.addr(OTHER_KEY);
        token.mint(other, 1e6);
        (bytes32 id,,) = _create(2, 1);
        bytes32 ref = keccak256("other");
        uint256 validBefore = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) =
            _signReceive(OTHER_KEY, other, 1e6, 0, validBefore, splitter.authorizationNonceOf(id, ref));
        splitter.payWithAuthorization(id, address(token), other, 1e6, 0, validBefore, ref, v, r, s);
        assertEq(token.balanceOf(other), 0, "payer debited");
    }

    // ---------------------------------------------------------------------------------------------
    // settleBatch

    function testFuzz_settleBatchPaysEveryPayeeOnce(uint256 count, uint256 seed) public {
        count = bound(count, 1, 60);
        address[] memory payees = new address[](count);
        uint256[] memory amounts = new uint256[](count);
        uint256 total = 0;
        for (uint256 i = 0; i < count; ++i) {
            payees[i] = address(uint160(0xBEEF0000 + i));
            amounts[i] = bound(uint256(keccak256(abi.encode(seed, i))), 1, 1e18);
            total += amounts[i];
        }
        uint256 before = token.balanceOf(payer);
        vm.prank(payer);
        assertEq(splitter.settleBatch(address(token), payees, amounts, bytes32(seed)), total, "total");
        for (uint256 i = 0; i < count; ++i) assertEq(token.balanceOf(payees[i]), amounts[i], "payee paid");
        assertEq(before - token.balanceOf(payer), total, "payer debited the total");
        assertEq(token.balanceOf(address(splitter)), 0, "splitter holds nothing");
        assertTrue(splitter.batchSettled(payer, bytes32(seed)), "ref recorded");
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterBatchAlreadySettled.selector, payer, bytes32(seed)));
        splitter.settleBatch(address(token), payees, amounts, bytes32(seed));
    }

    /// The event's batchHash (computed by copying calldata) equals batchHashOf (the ABI encoder), for any batch.
    function testFuzz_batchSettledCarriesTheBatchHash(uint256 count, uint256 seed) public {
        count = bound(count, 1, 40);
        address[] memory payees = new address[](count);
        uint256[] memory amounts = new uint256[](count);
        for (uint256 i = 0; i < count; ++i) {
            payees[i] = address(uint160(uint256(keccak256(abi.encode(seed, i))) | 1));
            amounts[i] = bound(uint256(keccak256(abi.encode(i, seed))), 1, 1e20);
        }
        vm.recordLogs();
        vm.prank(payer);
        uint256 total = splitter.settleBatch(address(token), payees, amounts, bytes32(seed));
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bool seen = false;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter != address(splitter) || logs[i].topics[0] != RevenueSplitter.BatchSettled.selector) continue;
            (uint256 payeeCount, uint256 loggedTotal, bytes32 batchHash) = abi.decode(logs[i].data, (uint256, uint256, bytes32));
            assertEq(payeeCount, count, "payee count");
            assertEq(loggedTotal, total, "total");
            assertEq(uint256(batchHash), uint256(splitter.batchHashOf(payees, amounts)), "batch hash");
            assertEq(uint256(logs[i].topics[3]), uint256(bytes32(seed)), "ref");
            seen = true;
        }
        assertTrue(seen, "BatchSettled emitted");
    }

    function test_settleBatchRejectsBadBatches() public {
        address[] memory payees = new address[](2);
        payees[0] = address(0x1);
        uint256[] memory amounts = new uint256[](2);
        amounts[0] = 1;
        amounts[1] = 1;
        vm.startPrank(payer);
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterZeroPayee.selector, 1));
        splitter.settleBatch(address(token), payees, amounts, bytes32("a"));
        payees[1] = address(0x2);
        amounts[1] = 0;
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterZeroPayout.selector, 1));
        splitter.settleBatch(address(token), payees, amounts, bytes32("a"));
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterLengthMismatch.selector, 2, 1));
        splitter.settleBatch(address(token), payees, new uint256[](1), bytes32("a"));
        vm.expectRevert(RevenueSplitter.RevenueSplitterEmptyBatch.selector);
        splitter.settleBatch(address(token), new address[](0), new uint256[](0), bytes32("a"));
        vm.expectRevert(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterBatchTooLarge.selector, 501, 500));
        splitter.settleBatch(address(token), new address[](501), new uint256[](501), bytes32("a"));
        vm.stopPrank();
        assertTrue(!splitter.batchSettled(payer, bytes32("a")), "a failed batch leaves the ref unused");
    }

    function test_settleBatchRefusesADirtyAddress() public {
        address[] memory payees = new address[](2);
        payees[0] = address(0x1);
        payees[1] = address(0x2);
        uint256[] memory amounts = new uint256[](2);
        amounts[0] = 1;
        amounts[1] = 1;
        bytes memory data = abi.encodeCall(RevenueSplitter.settleBatch, (address(token), payees, amounts, bytes32("d")));
        // selector, 4 head words, the length, payees[0], then payees[1]: set a bit above its 160 address bits
        data[4 + 5 * 32 + 32 + 11] = 0x01;
        vm.prank(payer);
        (bool ok, bytes memory revertData) = address(splitter).call(data);
        assertTrue(!ok, "refused");
        assertEq(
            uint256(keccak256(revertData)),
            uint256(keccak256(abi.encodeWithSelector(RevenueSplitter.RevenueSplitterDirtyAddress.selector, 1))),
            "dirty address error"
        );
    }

    function test_settleBatchRefusesATokenThatReturnsFalseAndAcceptsOneThatReturnsNothing() public {
        FalseReturningToken liar = new FalseReturningToken();
        address[] memory payees = new address[](1);
        payees[0] = address(0x1);
        uint256[] memory amounts = new uint256[](1);
        amounts[0] = 1;
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(liar)));
        splitter.settleBatch(address(liar), payees, amounts, bytes32("f"));

        NoReturnToken usdtLike = new NoReturnToken();
        usdtLike.mint(address(this), 10);
        usdtLike.approve(address(splitter), 10);
        splitter.settleBatch(address(usdtLike), payees, amounts, bytes32("f"));
        assertEq(usdtLike.balanceOf(address(0x1)), 1, "paid");

        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(0xdead)));
        splitter.settleBatch(address(0xdead), payees, amounts, bytes32("g"));
    }

    // ---------------------------------------------------------------------------------------------
    // hostile tokens

    function test_reentrantTokenCannotReenter() public {
        ReentrantToken hostile = new ReentrantToken();
        (bytes32 id, address[] memory recipients, uint16[] memory basisPoints) = _create(2, 1);
        hostile.mint(address(this), 1e9);
        hostile.approve(address(splitter), type(uint256).max);
        splitter.pay(id, address(hostile), 1e6, bytes32(0));
        splitter.distribute(id, address(hostile), bytes32(0));

        // During withdraw's token transfer, the token tries to withdraw again.
        hostile.arm(address(splitter), abi.encodeCall(RevenueSplitter.withdraw, (address(hostile), recipients, basisPoints, 0)));
        uint256 owed = splitter.balanceOf(id, address(hostile), 0);
        splitter.withdraw(address(hostile), recipients, basisPoints, 0);
        assertTrue(hostile.reentryAttempted() && !hostile.reentrySucceeded(), "reentry blocked");
        assertEq(
            uint256(bytes32(hostile.reentryRevertData())),
            uint256(bytes32(ReentrancyGuard.ReentrancyGuardReentrantCall.selector)),
            "by the guard"
        );
        assertEq(hostile.balanceOf(recipients[0]), owed, "paid once");

        // During pay's transferFrom, the token tries to pay into the split again (double counting).
        hostile.arm(address(splitter), abi.encodeCall(RevenueSplitter.pay, (id, address(hostile), 1e6, bytes32(0))));
        splitter.pay(id, address(hostile), 1e6, bytes32(0));
        assertTrue(hostile.reentryAttempted() && !hostile.reentrySucceeded(), "reentry into pay blocked");
        assertEq(splitter.undistributedOf(id, address(hostile)), 1e6, "counted once");

        // During settleBatch, the token tries to distribute.
        hostile.arm(address(splitter), abi.encodeCall(RevenueSplitter.distribute, (id, address(hostile), bytes32(0))));
        address[] memory payees = new address[](1);
        payees[0] = address(0xCAFE);
        uint256[] memory amounts = new uint256[](1);
        amounts[0] = 5;
        splitter.settleBatch(address(hostile), payees, amounts, bytes32("r"));
        assertTrue(!hostile.reentrySucceeded(), "reentry into distribute blocked");
        assertEq(splitter.undistributedOf(id, address(hostile)), 1e6, "still undistributed");
        assertEq(hostile.balanceOf(address(splitter)), 1e6 + 1e6 - owed, "tokens held = undistributed + balances");
    }

    function test_feeOnTransferTokenIsRefused() public {
        FeeOnTransferToken fee = new FeeOnTransferToken();
        (bytes32 id,,) = _create(2, 1);
        fee.mint(address(this), 1e9);
        fee.approve(address(splitter), type(uint256).max);
        vm.expectRevert(
            abi.encodeWithSelector(RevenueSplitter.RevenueSplitterAmountNotReceived.selector, address(fee), 1e6, 99e4)
        );
        splitter.pay(id, address(fee), 1e6, bytes32(0));
        assertEq(splitter.undistributedOf(id, address(fee)), 0, "nothing accrued");
    }
}
