// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {PriceFeed} from "../PriceFeed.sol";
import {CheatTest} from "./Vm.sol";

contract PriceFeedTest is CheatTest {
    PriceFeed private feed;
    address private constant STRANGER = address(0xBEEF);

    function setUp() public {
        vm.warp(1_800_000_000);
        feed = new PriceFeed(8, "ETH / USD", 3_000e8);
    }

    function _latest() private view returns (uint80, int256, uint256, uint256, uint80) {
        return feed.latestRoundData();
    }

    function test_readsLikeAChainlinkAggregator() public view {
        assertEq(feed.decimals(), 8, "decimals");
        assertEq(feed.version(), 1, "version");
        assertTrue(keccak256(bytes(feed.description())) == keccak256("ETH / USD"), "description");
        assertTrue(feed.owner() == address(this), "owner is the deployer");
        (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound) = _latest();
        assertEq(roundId, 1, "the constructor posts round 1");
        assertEq(uint256(answer), 3_000e8, "initial answer");
        assertEq(startedAt, 1_800_000_000, "startedAt");
        assertEq(updatedAt, 1_800_000_000, "updatedAt");
        assertEq(answeredInRound, 1, "answered in its own round");
    }

    function test_updateAnswer_postsTheNextRoundAtTheBlocksTime() public {
        vm.warp(1_800_000_600);
        vm.expectEmit(true, true, false, true, address(feed));
        emit PriceFeed.AnswerUpdated(3_100.25e8, 2, 1_800_000_600);
        feed.updateAnswer(3_100.25e8);
        (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound) = _latest();
        assertEq(roundId, 2, "round");
        assertEq(uint256(answer), 3_100.25e8, "answer");
        assertEq(startedAt, 1_800_000_600, "startedAt");
        assertEq(updatedAt, 1_800_000_600, "updatedAt");
        assertEq(answeredInRound, 2, "answeredInRound");
        assertEq(feed.latestRound(), 2, "latestRound");
    }

    function test_getRoundData_keepsEveryRound() public {
        vm.warp(1_800_000_100);
        feed.updateAnswer(2_900e8);
        vm.warp(1_800_000_200);
        feed.updateAnswer(3_200e8);
        (uint80 roundId, int256 answer,, uint256 updatedAt, uint80 answeredInRound) = feed.getRoundData(2);
        assertEq(roundId, 2, "round 2");
        assertEq(uint256(answer), 2_900e8, "round 2's answer");
        assertEq(updatedAt, 1_800_000_100, "round 2's time");
        assertEq(answeredInRound, 2, "round 2 answered in itself");
        (, answer,, updatedAt,) = feed.getRoundData(1);
        assertEq(uint256(answer), 3_000e8, "round 1 unchanged");
        assertEq(updatedAt, 1_800_000_000, "round 1's time unchanged");
    }

    function test_getRoundData_refusesARoundNeverPosted() public {
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedUnknownRound.selector, uint80(0)));
        feed.getRoundData(0);
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedUnknownRound.selector, uint80(2)));
        feed.getRoundData(2);
    }

    function test_updateAnswer_onlyTheOwner() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedUnauthorized.selector, STRANGER, address(this)));
        feed.updateAnswer(1e8);
        (uint80 roundId, int256 answer,,,) = _latest();
        assertEq(roundId, 1, "no round posted");
        assertEq(uint256(answer), 3_000e8, "answer unchanged");
    }

    function test_updateAnswer_refusesZeroAndNegative() public {
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedNonPositiveAnswer.selector, int256(0)));
        feed.updateAnswer(0);
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedNonPositiveAnswer.selector, int256(-1)));
        feed.updateAnswer(-1);
        assertEq(feed.latestRound(), 1, "no round posted");
    }

    function test_constructor_refusesANonPositiveAnswerAndTooManyDecimals() public {
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedNonPositiveAnswer.selector, int256(0)));
        new PriceFeed(8, "BTC / USD", 0);
        vm.expectRevert(abi.encodeWithSelector(PriceFeed.PriceFeedTooManyDecimals.selector, uint8(37), uint8(36)));
        new PriceFeed(37, "BTC / USD", 1);
    }

    function testFuzz_updateAnswer_latestIsTheLastPosted(uint256 rawAnswer, uint256 rawSteps, uint256 rawGap) public {
        uint256 steps = bound(rawSteps, 1, 8);
        uint256 gap = bound(rawGap, 1, 1 days);
        int256 answer = int256(bound(rawAnswer, 1, uint256(type(int256).max)));
        for (uint256 i = 0; i < steps; i++) {
            vm.warp(block.timestamp + gap);
            feed.updateAnswer(answer);
        }
        (uint80 roundId, int256 latest,, uint256 updatedAt, uint80 answeredInRound) = _latest();
        assertEq(roundId, 1 + steps, "one round per answer");
        assertEq(uint256(latest), uint256(answer), "latest answer");
        assertEq(updatedAt, block.timestamp, "stamped with the block's time");
        assertEq(answeredInRound, roundId, "answered in its own round");
    }
}
