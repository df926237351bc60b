// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TestUSD} from "../TestUSD.sol";
import {X402BatchSettler} from "../X402BatchSettler.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {CheatTest, Vm} from "./Vm.sol";

/// A token whose transferWithAuthorization needs `gasNeeded` gas and burns all it was given when short of it
/// (as `invalid` does): an item short of gas then looks, to the settler, like a refusal without data.
contract GasHungryToken {
    uint256 public immutable gasNeeded;
    uint256 public settled;

    constructor(uint256 gasNeeded_) {
        gasNeeded = gasNeeded_;
    }

    function transferWithAuthorization(address, address, uint256, uint256, uint256, bytes32, uint8, bytes32, bytes32)
        external
    {
        if (gasleft() < gasNeeded) {
            assembly {
                invalid()
            }
        }
        settled += 1;
    }
}

/// A token whose transferWithAuthorization burns every bit of gas it is given for one payer (as USDC's call of an
/// EIP-7702-delegated payer's isValidSignature can be made to) and, for any other, writes a fresh slot (about what
/// a real authorization's nonce costs).
contract GriefedToken {
    address public immutable griefer;
    mapping(bytes32 nonce => bool) public used;

    constructor(address griefer_) {
        griefer = griefer_;
    }

    function transferWithAuthorization(
        address from,
        address,
        uint256,
        uint256,
        uint256,
        bytes32 nonce,
        uint8,
        bytes32,
        bytes32
    ) external {
        if (from == griefer) {
            assembly {
                invalid()
            }
        }
        used[nonce] = true;
    }
}

contract X402BatchSettlerTest is CheatTest {
    bytes32 private constant TRANSFER_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 private constant CANCEL_TYPEHASH = keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");
    uint256 private constant FIRST_PAYER_KEY = 0x1000;
    uint256 private constant FUNDS = 1e6;
    uint256 private constant NOW = 1_800_000_000;
    address private constant PAYEE = address(0xBEEF);

    TestUSD private token;
    X402BatchSettler private settler;

    /// What a fuzzed item is: accepted, or refused by the token for one reason.
    enum Fault {
        None,
        BadSignature,
        Expired,
        UsedNonce,
        ShortOfFunds
    }

    struct Item {
        uint256 key;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
    }

    function setUp() public {
        token = new TestUSD("USD Coin", "TUSD", "2");
        settler = new X402BatchSettler();
        vm.warp(NOW);
    }

    // ------------------------------------------------------------------------------------------------
    // Helpers

    function _payer(uint256 i) private pure returns (uint256 key) {
        return FIRST_PAYER_KEY + i;
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
    }

    function _valid(uint256 key, uint256 value, bytes32 nonce) private pure returns (Item memory) {
        return Item({key: key, value: value, validAfter: NOW - 600, validBefore: NOW + 60, nonce: nonce});
    }

    function _authDigest(Item memory item) private view returns (bytes32) {
        return _digest(
            keccak256(
                abi.encode(
                    TRANSFER_TYPEHASH,
                    vm.addr(item.key),
                    PAYEE,
                    item.value,
                    item.validAfter,
                    item.validBefore,
                    item.nonce
                )
            )
        );
    }

    /// The item packed as the settler reads it, signed by `signer` (the payer's key for a good signature).
    function _packSignedBy(Item memory item, uint256 signer) private view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(signer, _authDigest(item));
        return bytes.concat(
            abi.encodePacked(vm.addr(item.key), uint128(item.value), uint48(item.validAfter), uint48(item.validBefore)),
            abi.encodePacked(item.nonce, r, s, v)
        );
    }

    function _pack(Item memory item) private view returns (bytes memory) {
        return _packSignedBy(item, item.key);
    }

    function _cancel(uint256 key, bytes32 nonce) private {
        address authorizer = vm.addr(key);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, _digest(keccak256(abi.encode(CANCEL_TYPEHASH, authorizer, nonce))));
        token.cancelAuthorization(authorizer, nonce, v, r, s);
    }

    /// The AuthorizationFailed events in `logs`, as (index, reason) in the order they were emitted.
    function _failures(Vm.Log[] memory logs) private view returns (uint256[] memory indexes, bytes4[] memory reasons) {
        uint256 n = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(settler) && logs[i].topics[0] == X402BatchSettler.AuthorizationFailed.selector) {
                ++n;
            }
        }
        indexes = new uint256[](n);
        reasons = new bytes4[](n);
        n = 0;
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter != address(settler) || logs[i].topics[0] != X402BatchSettler.AuthorizationFailed.selector) {
                continue;
            }
            (indexes[n], reasons[n]) = abi.decode(logs[i].data, (uint256, bytes4));
            ++n;
        }
    }

    // ------------------------------------------------------------------------------------------------
    // Settlement

    function test_settlesEveryItemInOneCall() public {
        bytes memory items;
        uint256 total = 0;
        for (uint256 i = 0; i < 5; ++i) {
            token.mint(vm.addr(_payer(i)), FUNDS);
            items = bytes.concat(items, _pack(_valid(_payer(i), 1_000 + i, keccak256(abi.encode("n", i)))));
            total += 1_000 + i;
        }
        vm.recordLogs();
        uint256 settled = settler.settle(address(token), PAYEE, items);
        assertEq(settled, 0x1f, "every item settled");
        assertEq(token.balanceOf(PAYEE), total, "payee paid the sum");
        for (uint256 i = 0; i < 5; ++i) {
            assertEq(token.balanceOf(vm.addr(_payer(i))), FUNDS - 1_000 - i, "payer paid its own value");
            assertTrue(token.authorizationState(vm.addr(_payer(i)), keccak256(abi.encode("n", i))), "nonce spent");
        }
        assertEq(token.balanceOf(address(settler)), 0, "nothing stays in the settler");
        Vm.Log[] memory logs = vm.getRecordedLogs();
        (uint256[] memory indexes,) = _failures(logs);
        assertEq(indexes.length, 0, "no failure logged");
        Vm.Log memory last = logs[logs.length - 1];
        assertEq(uint256(last.topics[0]), uint256(X402BatchSettler.BatchSettled.selector), "BatchSettled last");
        (uint256 count, uint256 bitmap) = abi.decode(last.data, (uint256, uint256));
        assertEq(count, 5, "count logged");
        assertEq(bitmap, 0x1f, "bitmap logged");
    }

    function test_aBadItemFailsAloneWithTheTokensReason() public {
        for (uint256 i = 0; i < 6; ++i) token.mint(vm.addr(_payer(i)), FUNDS);
        _cancel(_payer(3), "cancelled");
        Item memory expired = _valid(_payer(2), 5, "late");
        expired.validBefore = NOW; // valid strictly before now
        bytes memory items = bytes.concat(
            _pack(_valid(_payer(0), 10, "a")),
            _packSignedBy(_valid(_payer(1), 10, "b"), 0xBAD),
            _pack(expired),
            _pack(_valid(_payer(3), 10, "cancelled")),
            _pack(_valid(_payer(4), FUNDS + 1, "e")),
            _pack(_valid(_payer(5), 20, "f"))
        );
        vm.recordLogs();
        uint256 settled = settler.settle(address(token), PAYEE, items);
        assertEq(settled, 0x21, "items 0 and 5 settled, 1 to 4 did not");
        assertEq(token.balanceOf(PAYEE), 30, "only the good items paid");
        for (uint256 i = 1; i < 5; ++i) assertEq(token.balanceOf(vm.addr(_payer(i))), FUNDS, "a refused payer keeps its funds");
        assertTrue(!token.authorizationState(vm.addr(_payer(1)), "b"), "a refused nonce stays unused");

        (uint256[] memory indexes, bytes4[] memory reasons) = _failures(vm.getRecordedLogs());
        assertEq(indexes.length, 4, "four failures logged");
        bytes4[4] memory expected = [
            ERC3009.ERC3009InvalidSignature.selector,
            ERC3009.ERC3009InvalidAuthorizationTime.selector,
            ERC3009.ERC3009UsedAuthorization.selector,
            IERC20Errors.ERC20InsufficientBalance.selector
        ];
        for (uint256 i = 0; i < 4; ++i) {
            assertEq(indexes[i], i + 1, "failed index");
            assertEq(uint32(reasons[i]), uint32(expected[i]), "the token's error selector");
        }
    }

    function test_theSameAuthorizationTwiceInOneBatchPaysOnce() public {
        token.mint(vm.addr(_payer(0)), FUNDS);
        bytes memory one = _pack(_valid(_payer(0), 7, "twice"));
        uint256 settled = settler.settle(address(token), PAYEE, bytes.concat(one, one));
        assertEq(settled, 0x1, "the first settles, the copy does not");
        assertEq(token.balanceOf(PAYEE), 7, "paid once");
    }

    function test_aSettledAuthorizationReplayedLaterPaysNothing() public {
        token.mint(vm.addr(_payer(0)), FUNDS);
        bytes memory one = _pack(_valid(_payer(0), 7, "again"));
        assertEq(settler.settle(address(token), PAYEE, one), 1, "settled");
        vm.recordLogs();
        assertEq(settler.settle(address(token), PAYEE, one), 0, "replay refused");
        (, bytes4[] memory reasons) = _failures(vm.getRecordedLogs());
        assertEq(uint32(reasons[0]), uint32(ERC3009.ERC3009UsedAuthorization.selector), "used");
        assertEq(token.balanceOf(PAYEE), 7, "paid once");
    }

    function test_anAuthorizationForAnotherPayeeDoesNotSettle() public {
        token.mint(vm.addr(_payer(0)), FUNDS);
        bytes memory signedForPayee = _pack(_valid(_payer(0), 7, "x"));
        assertEq(settler.settle(address(token), address(0xCAFE), signedForPayee), 0, "the signature names PAYEE");
        assertEq(token.balanceOf(address(0xCAFE)), 0, "nothing moved");
    }

    function test_refusesBadCalls() public {
        bytes memory one = _pack(_valid(_payer(0), 1, "x"));
        vm.expectRevert(X402BatchSettler.X402BatchEmpty.selector);
        settler.settle(address(token), PAYEE, "");
        vm.expectRevert(abi.encodeWithSelector(X402BatchSettler.X402BatchMalformed.selector, 144, 145));
        settler.settle(address(token), PAYEE, new bytes(144));
        vm.expectRevert(abi.encodeWithSelector(X402BatchSettler.X402BatchTooLarge.selector, 257, 256));
        settler.settle(address(token), PAYEE, new bytes(257 * 145));
        vm.expectRevert(abi.encodeWithSelector(X402BatchSettler.X402BatchNotAContract.selector, address(0x1234)));
        settler.settle(address(0x1234), PAYEE, one);
        vm.expectRevert(abi.encodeWithSelector(X402BatchSettler.X402BatchInvalidPayee.selector, address(0)));
        settler.settle(address(token), address(0), one);
        vm.expectRevert(abi.encodeWithSelector(X402BatchSettler.X402BatchInvalidPayee.selector, address(settler)));
        settler.settle(address(token), address(settler), one);
    }

    function test_holdsNothingAndTakesNoEther() public {
        (bool ok,) = address(settler).call{value: 0}("");
        assertTrue(!ok, "no receive or fallback");
        (ok,) = address(settler).call(abi.encodeWithSignature("owner()"));
        assertTrue(!ok, "no owner");
    }

    // ------------------------------------------------------------------------------------------------
    // Fuzz

    /// Any mix of good and refused items: exactly the good ones settle, each payer pays its own value once,
    /// the payee gets their sum, and nothing is created, lost or left in the settler.
    function testFuzz_exactlyTheItemsTheTokenAcceptsSettle(uint256 seed, uint256 count) public {
        count = bound(count, 1, 24);
        bytes memory items;
        uint256 expected = 0;
        uint256 paid = 0;
        uint256 supply = token.totalSupply();
        for (uint256 i = 0; i < count; ++i) {
            uint256 key = _payer(i);
            token.mint(vm.addr(key), FUNDS);
            supply += FUNDS;
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            Fault fault = Fault(r % 5);
            Item memory item = _valid(key, bound(r >> 8, 0, FUNDS), bytes32(r));
            if (fault == Fault.None) {
                expected |= uint256(1) << i;
                paid += item.value;
                items = bytes.concat(items, _pack(item));
            } else if (fault == Fault.BadSignature) {
                items = bytes.concat(items, _packSignedBy(item, key + 0x5000));
            } else if (fault == Fault.Expired) {
                item.validBefore = NOW - bound(r >> 128, 0, 3600);
                items = bytes.concat(items, _pack(item));
            } else if (fault == Fault.UsedNonce) {
                _cancel(key, item.nonce);
                items = bytes.concat(items, _pack(item));
            } else {
                item.value = FUNDS + 1 + bound(r >> 64, 0, FUNDS);
                items = bytes.concat(items, _pack(item));
            }
        }
        uint256 settled = settler.settle(address(token), PAYEE, items);
        assertEq(settled, expected, "settled bitmap");
        assertEq(token.balanceOf(PAYEE), paid, "payee got the good items' sum");
        for (uint256 i = 0; i < count; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 spent = (expected >> i) & 1 == 1 ? bound(r >> 8, 0, FUNDS) : 0;
            assertEq(token.balanceOf(vm.addr(_payer(i))), FUNDS - spent, "payer balance");
        }
        assertEq(token.totalSupply(), supply, "no money made or lost");
        assertEq(token.balanceOf(address(settler)), 0, "nothing stays in the settler");
    }

    /// Whatever gas the caller gives, a good item is never reported as refused: the call either settles all
    /// of them or reverts as a whole (out of gas, or X402BatchGasTooLow).
    function testFuzz_aGoodItemIsNeverReportedRefusedForWantOfGas(uint256 gasLimit) public {
        uint256 g = bound(gasLimit, 20_000, 400_000);
        bytes memory items;
        for (uint256 i = 0; i < 3; ++i) {
            token.mint(vm.addr(_payer(i)), FUNDS);
            items = bytes.concat(items, _pack(_valid(_payer(i), 1 + i, bytes32(i + 1))));
        }
        (bool ok, bytes memory returned) =
            address(settler).call{gas: g}(abi.encodeCall(X402BatchSettler.settle, (address(token), PAYEE, items)));
        if (ok) {
            assertEq(abi.decode(returned, (uint256)), 0x7, "all settled when the call succeeds");
            assertEq(token.balanceOf(PAYEE), 6, "paid");
        } else {
            assertEq(token.balanceOf(PAYEE), 0, "nothing moved when it reverts");
        }
    }

    function test_enoughGasSettlesAll() public {
        bytes memory items;
        for (uint256 i = 0; i < 3; ++i) {
            token.mint(vm.addr(_payer(i)), FUNDS);
            items = bytes.concat(items, _pack(_valid(_payer(i), 1 + i, bytes32(i + 1))));
        }
        (bool ok, bytes memory returned) = address(settler).call{gas: 400_000}(
            abi.encodeCall(X402BatchSettler.settle, (address(token), PAYEE, items))
        );
        assertTrue(ok, "400,000 gas settle three");
        assertEq(abi.decode(returned, (uint256)), 0x7, "all settled");
    }

    /// A heavy token (but within ITEM_GAS_MAX) shows why the settler checks the gas left before each item: an item
    /// short of the caller's gas would look like a refusal. Whatever the caller gives, it settles or the call reverts.
    function testFuzz_aHeavyItemShortOfGasRevertsTheCall(uint256 gasLimit) public {
        GasHungryToken hungry = new GasHungryToken(150_000);
        uint256 g = bound(gasLimit, 60_000, 4_000_000);
        bytes memory items = new bytes(145); // one item: its failure is the last thing the call pays for
        (bool ok, bytes memory returned) =
            address(settler).call{gas: g}(abi.encodeCall(X402BatchSettler.settle, (address(hungry), PAYEE, items)));
        if (ok) {
            assertEq(abi.decode(returned, (uint256)), 0x1, "settled when the call succeeds");
            assertEq(hungry.settled(), 1, "the call made");
        } else {
            assertEq(hungry.settled(), 0, "nothing settled when it reverts");
        }
    }

    /// An item that needs more than ITEM_GAS_MAX is refused alone, however much gas the caller gives.
    function test_anItemHeavierThanItsCapIsRefusedAlone() public {
        GasHungryToken hungry = new GasHungryToken(1_000_000);
        bytes memory items = new bytes(145 * 2);
        (bool ok, bytes memory returned) = address(settler).call{gas: 10_000_000}(
            abi.encodeCall(X402BatchSettler.settle, (address(hungry), PAYEE, items))
        );
        assertTrue(ok, "the call settles what it can");
        assertEq(abi.decode(returned, (uint256)), 0, "neither settled");
        assertEq(hungry.settled(), 0, "nothing settled");
    }

    /// One payer whose authorization burns all the gas it is given fails alone: the 15 others settle, and the batch
    /// costs that payer's item ITEM_GAS_MAX. Before, it was given all but 1/64 of the gas left, and the items after
    /// it ran out: the call reverted whatever gas the caller gave, up to the 2^24 cap.
    function test_aPayerThatBurnsItsGasFailsAloneAtACostOfItsCap() public {
        address griefer = vm.addr(_payer(0));
        GriefedToken griefed = new GriefedToken(griefer);
        bytes memory items;
        for (uint256 i = 0; i < 16; ++i) {
            bytes memory item = new bytes(145);
            address from = i == 0 ? griefer : vm.addr(_payer(i));
            for (uint256 b = 0; b < 20; ++b) item[b] = bytes20(from)[b];
            item[79] = bytes1(uint8(i + 1)); // the nonce's last byte: a fresh slot each
            items = bytes.concat(items, item);
        }
        uint256 before = gasleft();
        (bool ok, bytes memory returned) = address(settler).call{gas: 16_000_000}(
            abi.encodeCall(X402BatchSettler.settle, (address(griefed), PAYEE, items))
        );
        uint256 used = before - gasleft();
        assertTrue(ok, "the batch settles");
        assertEq(abi.decode(returned, (uint256)), 0xFFFE, "all but the griefer's");
        assertLe(used, 1_000_000, "the griefer's item cost at most its cap");
    }
}
