// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Forwarder, ForwarderFactory} from "../ForwarderFactory.sol";
import {TestUSD} from "../TestUSD.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {CheatTest} from "./Vm.sol";

contract ForwarderFactoryTest is CheatTest {
    TestUSD private token;
    ForwarderFactory private factory;
    address private constant OWNER = address(0xB0B);
    address private constant PAYER = address(0xCAFE);

    function setUp() public {
        token = new TestUSD("USD Coin", "TUSD", "2");
        factory = new ForwarderFactory(OWNER);
        token.mint(PAYER, 1_000_000e6);
    }

    function _salts(bytes32 a, bytes32 b) private pure returns (bytes32[] memory salts) {
        salts = new bytes32[](2);
        salts[0] = a;
        salts[1] = b;
    }

    function test_addressIsKnownBeforeDeploymentAndTheCloneLandsThere() public {
        bytes32 salt = keccak256("inv_1");
        address predicted = factory.forwarderAddress(salt);
        assertEq(predicted.code.length, 0, "no code before the sweep");
        vm.prank(PAYER);
        token.transfer(predicted, 25e6);
        vm.prank(OWNER);
        uint256 total = factory.sweep(IERC20(address(token)), _salts(salt, keccak256("inv_2")));
        assertTrue(predicted.code.length > 0, "deployed at the predicted address");
        assertEq(total, 25e6, "total swept");
        assertEq(token.balanceOf(OWNER), 25e6, "owner received");
        assertEq(token.balanceOf(predicted), 0, "forwarder emptied");
        assertTrue(factory.forwarderAddress(keccak256("inv_2")).code.length > 0, "empty one deployed too");
    }

    function test_secondSweepOfADeployedForwarderMovesWhatCameSince() public {
        bytes32 salt = keccak256("inv_1");
        address forwarder = factory.forwarderAddress(salt);
        bytes32[] memory one = new bytes32[](1);
        one[0] = salt;
        vm.prank(PAYER);
        token.transfer(forwarder, 10e6);
        vm.prank(OWNER);
        factory.sweep(IERC20(address(token)), one);
        vm.prank(OWNER);
        assertEq(factory.sweep(IERC20(address(token)), one), 0, "nothing left");
        vm.prank(PAYER);
        token.transfer(forwarder, 3e6);
        vm.prank(OWNER);
        assertEq(factory.sweep(IERC20(address(token)), one), 3e6, "a late payment is swept too");
        assertEq(token.balanceOf(OWNER), 13e6, "owner holds both");
    }

    function test_onlyTheOwnerSweeps() public {
        bytes32[] memory one = new bytes32[](1);
        one[0] = keccak256("inv_1");
        vm.prank(PAYER);
        vm.expectRevert(abi.encodeWithSelector(ForwarderFactory.ForwarderFactoryUnauthorized.selector, PAYER));
        factory.sweep(IERC20(address(token)), one);
    }

    function test_aForwarderObeysOnlyItsFactory() public {
        bytes32 salt = keccak256("inv_1");
        address forwarder = factory.forwarderAddress(salt);
        bytes32[] memory one = new bytes32[](1);
        one[0] = salt;
        vm.prank(OWNER);
        factory.sweep(IERC20(address(token)), one);
        vm.prank(PAYER);
        token.transfer(forwarder, 5e6);
        vm.prank(PAYER);
        vm.expectRevert(abi.encodeWithSelector(Forwarder.ForwarderUnauthorized.selector, PAYER));
        Forwarder(forwarder).sweep(IERC20(address(token)), PAYER);
        assertEq(token.balanceOf(forwarder), 5e6, "still there");
    }

    function test_tooManySaltsRefused() public {
        bytes32[] memory many = new bytes32[](201);
        vm.prank(OWNER);
        vm.expectRevert(abi.encodeWithSelector(ForwarderFactory.ForwarderFactoryTooManySalts.selector, 201, 200));
        factory.sweep(IERC20(address(token)), many);
    }

    function testFuzz_sweepMovesExactlyWhatWasSent(uint256 a, uint256 b) public {
        a = bound(a, 0, 500_000e6);
        b = bound(b, 0, 500_000e6);
        bytes32[] memory salts = _salts(keccak256("x"), keccak256("y"));
        vm.startPrank(PAYER);
        token.transfer(factory.forwarderAddress(salts[0]), a);
        token.transfer(factory.forwarderAddress(salts[1]), b);
        vm.stopPrank();
        vm.prank(OWNER);
        assertEq(factory.sweep(IERC20(address(token)), salts), a + b, "total");
        assertEq(token.balanceOf(OWNER), a + b, "owner");
    }
}
