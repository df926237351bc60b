// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title PriceFeed — a price feed readable as a Chainlink aggregator (AggregatorV3Interface), for local chains and
/// tests: the owner posts each answer itself (`updateAnswer`), one round per answer.
/// @notice Reads exactly like a Chainlink data feed: `decimals()`, `description()`, `version()`,
/// `latestRoundData()` and `getRoundData(roundId)` returning (roundId, answer, startedAt, updatedAt,
/// answeredInRound). Every round is answered in itself (answeredInRound == roundId), started and updated at the
/// block's timestamp. Rounds start at 1; round 0 does not exist. An answer is the price of one whole unit of the
/// asset in the quote currency (USD), scaled by 10^decimals: ETH at $3,000.25 with 8 decimals is 300025000000.
contract PriceFeed {
    /// @notice AggregatorV3Interface's version of this implementation.
    uint256 public constant version = 1;

    /// @notice The digits after the decimal point in every answer (Chainlink's USD feeds: 8).
    uint8 public immutable decimals;
    /// @notice Who may post answers: the deployer.
    address public immutable owner;
    /// @notice What the feed prices, e.g. "ETH / USD".
    string public description;

    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    /// @notice The last round posted (0 before the first answer, which the constructor posts).
    uint80 public latestRound;
    mapping(uint80 roundId => Round) private rounds;

    /// @notice Chainlink's AggregatorInterface event: a round was answered.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    /// @notice Only the owner posts answers.
    error PriceFeedUnauthorized(address caller, address owner);
    /// @notice A price is positive: zero or a negative answer is refused.
    error PriceFeedNonPositiveAnswer(int256 answer);
    /// @notice No such round has been posted.
    error PriceFeedUnknownRound(uint80 roundId);
    /// @notice More decimals than an answer can meaningfully carry.
    error PriceFeedTooManyDecimals(uint8 decimals, uint8 max);

    /// @notice The most decimals a feed may have (Chainlink's feeds use 8 or 18).
    uint8 public constant DECIMALS_MAX = 36;

    /// @param decimals_ Digits after the decimal point in every answer.
    /// @param description_ What the feed prices, e.g. "ETH / USD".
    /// @param initialAnswer The first answer (round 1).
    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        if (decimals_ > DECIMALS_MAX) revert PriceFeedTooManyDecimals(decimals_, DECIMALS_MAX);
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        _post(initialAnswer);
    }

    /// @notice Posts a new answer as the next round, stamped with this block's timestamp.
    function updateAnswer(int256 answer) external {
        if (msg.sender != owner) revert PriceFeedUnauthorized(msg.sender, owner);
        _post(answer);
    }

    /// @notice The latest round, as AggregatorV3Interface.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }

    /// @notice One posted round, as AggregatorV3Interface; reverts for a round never posted.
    function getRoundData(uint80 _roundId)
        public
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round storage round = rounds[_roundId];
        if (round.updatedAt == 0) revert PriceFeedUnknownRound(_roundId);
        return (_roundId, round.answer, round.startedAt, round.updatedAt, _roundId);
    }

    function _post(int256 answer) private {
        if (answer <= 0) revert PriceFeedNonPositiveAnswer(answer);
        // A uint80 round counter does not overflow: 2^80 transactions will never be mined.
        uint80 roundId = latestRound + 1;
        // block.timestamp fits in 64 bits for the next 584 billion years.
        uint64 timestamp = uint64(block.timestamp);
        rounds[roundId] = Round({answer: answer, startedAt: timestamp, updatedAt: timestamp});
        latestRound = roundId;
        emit AnswerUpdated(answer, roundId, timestamp);
    }
}
