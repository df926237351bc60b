// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {RevenueSplitter} from "../RevenueSplitter.sol";
import {TestUSD} from "../TestUSD.sol";
import {CheatTest} from "./Vm.sol";

/// @dev Drives RevenueSplitter through bounded random sequences of pay / distribute / withdraw / withdrawAll /
/// settleBatch on two splits, keeping ghost totals of what went in and out.
contract SplitterHandler is CheatTest {
    uint256 public constant SPLITS = 2;
    uint256 public constant PAYMENT_UNITS_MAX = 1e13;

    TestUSD public immutable token;
    RevenueSplitter public immutable splitter;
    address public immutable payer;

    bytes32[SPLITS] public splitIds;
    address[][SPLITS] internal recipientsOf;
    uint16[][SPLITS] internal basisPointsOf;

    uint256 public ghostPaid;
    uint256 public ghostWithdrawn;
    uint256 public ghostSettled;
    mapping(uint256 split => uint256) public ghostPaidInto;
    mapping(uint256 split => uint256) public ghostDistributed;
    mapping(uint256 split => uint256) public ghostDistributions;
    mapping(uint256 split => mapping(uint256 index => uint256)) public ghostWithdrawnBy;

    constructor(TestUSD token_, RevenueSplitter splitter_) {
        token = token_;
        splitter = splitter_;
        payer = address(0xFA7E);
        token.mint(payer, type(uint128).max);
        vm.prank(payer);
        token.approve(address(splitter), type(uint256).max);

        // split 0: three recipients with shares that leave remainders; split 1: seven recipients
        uint16[3] memory a = [uint16(3333), 3333, 3334];
        uint16[7] memory b = [uint16(1), 9, 90, 900, 2000, 3000, 4000];
        for (uint256 i = 0; i < 3; ++i) {
            recipientsOf[0].push(address(uint160(0xA000 + i)));
            basisPointsOf[0].push(a[i]);
        }
        for (uint256 i = 0; i < 7; ++i) {
            recipientsOf[1].push(address(uint160(0xB000 + i)));
            basisPointsOf[1].push(b[i]);
        }
        for (uint256 s = 0; s < SPLITS; ++s) splitIds[s] = splitter.createSplit(recipientsOf[s], basisPointsOf[s]);
    }

    function recipients(uint256 split) external view returns (address[] memory) {
        return recipientsOf[split];
    }

    function shares(uint256 split) external view returns (uint16[] memory) {
        return basisPointsOf[split];
    }

    function pay(uint256 splitSeed, uint256 amount) external {
        uint256 s = splitSeed % SPLITS;
        amount = bound(amount, 1, PAYMENT_UNITS_MAX);
        vm.prank(payer);
        splitter.pay(splitIds[s], address(token), amount, bytes32(amount));
        ghostPaid += amount;
        ghostPaidInto[s] += amount;
    }

    function distribute(uint256 splitSeed) external {
        uint256 s = splitSeed % SPLITS;
        uint256 pending = splitter.undistributedOf(splitIds[s], address(token));
        if (pending == 0) return;
        uint256 amount = splitter.distribute(splitIds[s], address(token), bytes32(0));
        assertEq(amount, pending, "distributes what is pending");
        ghostDistributed[s] += amount;
        ghostDistributions[s] += 1;
    }

    function withdraw(uint256 splitSeed, uint256 indexSeed) external {
        uint256 s = splitSeed % SPLITS;
        uint256 index = indexSeed % recipientsOf[s].length;
        if (splitter.balanceOf(splitIds[s], address(token), index) == 0) return;
        uint256 amount = splitter.withdraw(address(token), recipientsOf[s], basisPointsOf[s], index);
        ghostWithdrawn += amount;
        ghostWithdrawnBy[s][index] += amount;
    }

    function withdrawAll(uint256 splitSeed) external {
        uint256 s = splitSeed % SPLITS;
        uint256 n = recipientsOf[s].length;
        uint256[] memory owed = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) owed[i] = splitter.balanceOf(splitIds[s], address(token), i);
        uint256 total = splitter.withdrawAll(address(token), recipientsOf[s], basisPointsOf[s]);
        ghostWithdrawn += total;
        for (uint256 i = 0; i < n; ++i) ghostWithdrawnBy[s][i] += owed[i];
    }

    function settleBatch(uint256 seed, uint8 count) external {
        uint256 n = bound(count, 1, 5);
        address[] memory payees = new address[](n);
        uint256[] memory amounts = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            payees[i] = address(uint160(0xC000 + i));
            amounts[i] = bound(uint256(keccak256(abi.encode(seed, i))), 1, PAYMENT_UNITS_MAX);
        }
        vm.prank(payer);
        ghostSettled += splitter.settleBatch(address(token), payees, amounts, keccak256(abi.encode(seed, ghostSettled)));
    }
}

contract RevenueSplitterInvariantTest is CheatTest {
    TestUSD private token;
    RevenueSplitter private splitter;
    SplitterHandler private handler;

    function setUp() public {
        token = new TestUSD("USD Coin", "TUSD", "2");
        splitter = new RevenueSplitter();
        handler = new SplitterHandler(token, splitter);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// Tokens are conserved: the splitter holds exactly what was paid in and not yet withdrawn, and that is
    /// exactly the undistributed amounts plus the recipients' balances.
    function invariant_tokensConserved() public view {
        uint256 held = token.balanceOf(address(splitter));
        assertEq(held, handler.ghostPaid() - handler.ghostWithdrawn(), "held = paid - withdrawn");
        uint256 owed = 0;
        for (uint256 s = 0; s < handler.SPLITS(); ++s) {
            bytes32 id = handler.splitIds(s);
            owed += splitter.undistributedOf(id, address(token));
            uint256 n = splitter.recipientCountOf(id);
            for (uint256 i = 0; i < n; ++i) owed += splitter.balanceOf(id, address(token), i);
            (uint256 received, uint256 distributed) = splitter.totalsOf(id, address(token));
            assertEq(received, handler.ghostPaidInto(s), "received total");
            assertEq(distributed, handler.ghostDistributed(s), "distributed total");
        }
        assertEq(held, owed, "held = undistributed + balances");
    }

    /// Nobody is credited more than their share: recipient i > 0 at most floor-sum of its share of what was
    /// distributed; recipient 0 at most its share plus fewer than n units per distribution (the remainder).
    function invariant_nobodyGetsMoreThanTheirShare() public view {
        for (uint256 s = 0; s < handler.SPLITS(); ++s) {
            bytes32 id = handler.splitIds(s);
            uint16[] memory bps = handler.shares(s);
            uint256 distributed = handler.ghostDistributed(s);
            uint256 rounds = handler.ghostDistributions(s);
            uint256 n = bps.length;
            uint256 creditedTotal = 0;
            for (uint256 i = 0; i < n; ++i) {
                uint256 credited = splitter.balanceOf(id, address(token), i) + handler.ghostWithdrawnBy(s, i);
                creditedTotal += credited;
                uint256 fair = distributed * bps[i] / 10_000;
                if (i == 0) {
                    assertLe(credited, fair + rounds * (n - 1) + 1, "first: share + remainders");
                } else {
                    assertLe(credited, fair, "share");
                    assertLe(fair, credited + rounds, "at most one unit lost to rounding per distribution");
                }
            }
            assertEq(creditedTotal, distributed, "credited = distributed");
        }
    }

    /// settleBatch never leaves tokens in the splitter (it only routes payer -> payee).
    function invariant_settlementDoesNotTouchCustody() public view {
        uint256 paidOut = 0;
        for (uint256 i = 0; i < 5; ++i) paidOut += token.balanceOf(address(uint160(0xC000 + i)));
        assertEq(paidOut, handler.ghostSettled(), "payees hold what was settled");
    }
}
