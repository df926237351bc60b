// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {TestUSD} from "../TestUSD.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {CheatTest} from "./Vm.sol";

contract TestUSDTest is CheatTest {
    bytes32 private constant TRANSFER_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 private constant RECEIVE_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 private constant CANCEL_TYPEHASH = keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");
    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
    uint256 private constant OWNER_KEY = 0x0123;

    TestUSD private token;
    address private owner;

    function setUp() public {
        token = new TestUSD("USD Coin", "TUSD", "2");
        owner = vm.addr(OWNER_KEY);
        token.mint(owner, 100e6);
        vm.warp(1_800_000_000);
    }

    function _digest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
    }

    function _signAuth(bytes32 typehash, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce)
        private
        view
        returns (uint8, bytes32, bytes32)
    {
        return vm.sign(
            OWNER_KEY, _digest(keccak256(abi.encode(typehash, owner, to, value, validAfter, validBefore, nonce)))
        );
    }

    function test_looksLikeUsdc() public view {
        assertEq(token.decimals(), 6, "decimals");
        assertTrue(keccak256(bytes(token.name())) == keccak256("USD Coin"), "name");
        assertTrue(keccak256(bytes(token.version())) == keccak256("2"), "version");
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("USD Coin"),
                keccak256("2"),
                block.chainid,
                address(token)
            )
        );
        assertEq(uint256(token.DOMAIN_SEPARATOR()), uint256(expected), "USDC's domain");
    }

    function test_domainNameAndVersionAreConfigurable() public {
        TestUSD other = new TestUSD("Test Dollar", "TD", "7");
        (, string memory name, string memory version,,,,) = other.eip712Domain();
        assertTrue(keccak256(bytes(name)) == keccak256("Test Dollar"), "name");
        assertTrue(keccak256(bytes(version)) == keccak256("7"), "version");
    }

    function test_permitSetsAllowanceOnceAndExpires() public {
        address spender = address(0x5BE);
        uint256 deadline = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(OWNER_KEY, _digest(keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, 7e6, 0, deadline))));
        token.permit(owner, spender, 7e6, deadline, v, r, s);
        assertEq(token.allowance(owner, spender), 7e6, "allowance");
        assertEq(token.nonces(owner), 1, "nonce advanced");
        // replay: the nonce moved on, so the same signature now recovers someone else
        vm.expectRevert();
        token.permit(owner, spender, 7e6, deadline, v, r, s);

        (v, r, s) = vm.sign(OWNER_KEY, _digest(keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, 1, 1, deadline))));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(TestUSD.TestUSDExpiredPermit.selector, deadline, deadline + 1));
        token.permit(owner, spender, 1, deadline, v, r, s);
    }

    function testFuzz_transferWithAuthorizationOnceWithinItsWindow(bytes32 nonce, uint256 value, uint256 lifetime) public {
        value = bound(value, 0, 100e6);
        lifetime = bound(lifetime, 1, 365 days);
        address to = address(0x70);
        uint256 validBefore = block.timestamp + lifetime;
        (uint8 v, bytes32 r, bytes32 s) = _signAuth(TRANSFER_TYPEHASH, to, value, 0, validBefore, nonce);
        assertTrue(!token.authorizationState(owner, nonce), "unused");
        token.transferWithAuthorization(owner, to, value, 0, validBefore, nonce, v, r, s);
        assertEq(token.balanceOf(to), value, "moved");
        assertTrue(token.authorizationState(owner, nonce), "used");
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009UsedAuthorization.selector, owner, nonce));
        token.transferWithAuthorization(owner, to, value, 0, validBefore, nonce, v, r, s);
    }

    function test_authorizationWindowIsStrict() public {
        address to = address(0x70);
        uint256 now_ = 1_800_000_000; // a literal: via-IR may re-read TIMESTAMP after vm.warp
        (uint8 v, bytes32 r, bytes32 s) = _signAuth(TRANSFER_TYPEHASH, to, 1, now_, now_ + 10, bytes32("a"));
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009InvalidAuthorizationTime.selector, now_, now_ + 10));
        token.transferWithAuthorization(owner, to, 1, now_, now_ + 10, bytes32("a"), v, r, s);
        vm.warp(now_ + 10);
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009InvalidAuthorizationTime.selector, now_, now_ + 10));
        token.transferWithAuthorization(owner, to, 1, now_, now_ + 10, bytes32("a"), v, r, s);
        vm.warp(now_ + 5);
        token.transferWithAuthorization(owner, to, 1, now_, now_ + 10, bytes32("a"), v, r, s);
        assertEq(token.balanceOf(to), 1, "valid inside the window");
    }

    function test_receiveWithAuthorizationOnlyByThePayee() public {
        address payee = address(0xEE);
        uint256 validBefore = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) = _signAuth(RECEIVE_TYPEHASH, payee, 3e6, 0, validBefore, bytes32("n"));
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InvalidReceiver.selector, payee));
        token.receiveWithAuthorization(owner, payee, 3e6, 0, validBefore, bytes32("n"), v, r, s);
        vm.prank(payee);
        token.receiveWithAuthorization(owner, payee, 3e6, 0, validBefore, bytes32("n"), v, r, s);
        assertEq(token.balanceOf(payee), 3e6, "received");
    }

    function test_cancelledNonceCannotBeUsed() public {
        bytes32 nonce = keccak256("random");
        (uint8 cv, bytes32 cr, bytes32 cs) = vm.sign(OWNER_KEY, _digest(keccak256(abi.encode(CANCEL_TYPEHASH, owner, nonce))));
        token.cancelAuthorization(owner, nonce, cv, cr, cs);
        assertTrue(token.authorizationState(owner, nonce), "cancelled");
        (uint8 v, bytes32 r, bytes32 s) = _signAuth(TRANSFER_TYPEHASH, address(0x70), 1, 0, block.timestamp + 60, nonce);
        vm.expectRevert(abi.encodeWithSelector(ERC3009.ERC3009UsedAuthorization.selector, owner, nonce));
        token.transferWithAuthorization(owner, address(0x70), 1, 0, block.timestamp + 60, nonce, v, r, s);
    }

    function test_wrongSignerIsRejected() public {
        address to = address(0x70);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(
            0xBAD,
            _digest(keccak256(abi.encode(TRANSFER_TYPEHASH, owner, to, 1, 0, block.timestamp + 60, bytes32("x"))))
        );
        vm.expectRevert(ERC3009.ERC3009InvalidSignature.selector);
        token.transferWithAuthorization(owner, to, 1, 0, block.timestamp + 60, bytes32("x"), v, r, s);
    }
}
