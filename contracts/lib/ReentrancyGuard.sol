// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ReentrancyGuard — `nonReentrant` on a transient state variable.
///
/// @notice Why not OpenZeppelin's ReentrancyGuardTransient: it writes its flag with inline-assembly `tstore`, and
/// solc warns on every build that compiles that ("Transient storage as defined by EIP-1153 can break the
/// composability of smart contracts..."), the first thing a newcomer saw on `npm start`. solc does not warn for a
/// `transient` state variable, the same storage written by the compiler. The warning's concern does not apply: the
/// flag is cleared at the end of every guarded call, as it says a reentrancy guard must be.
///
/// Same behaviour as OpenZeppelin's: a `nonReentrant` function entered while another is running (directly or
/// through any external call) reverts with the same error, ReentrancyGuardReentrantCall() (selector 0x3ee5aeb5),
/// and the flag is cleared when the function returns. A `nonReentrant` function cannot call another.
///
/// @dev The flag is a whole word (0 or 1), not a `bool`: solc writes a `bool` by reading the slot, masking and
/// writing it back, which cost 82–97 gas more per guarded call than OpenZeppelin's guard; the word costs 137–151
/// less (npm run bench -- gas). It sits in the compiler's transient slot 0 of the inheriting contract, not in
/// OpenZeppelin's ERC-7201 slot: no inline assembly in these contracts touches transient storage, so nothing else
/// can share it.
abstract contract ReentrancyGuard {
    uint256 private transient _entered;

    /// @notice A `nonReentrant` function was entered while one was running.
    error ReentrancyGuardReentrantCall();

    modifier nonReentrant() {
        if (_entered != 0) revert ReentrancyGuardReentrantCall();
        _entered = 1;
        _;
        _entered = 0;
    }
}
