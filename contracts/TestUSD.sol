// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

/// @title TestUSD — a USDC-like token for local chains only. It has no value: anyone may mint.
/// @notice Mirrors what a gateway relies on in USDC (FiatTokenV2_2): 6 decimals, EIP-2612 `permit` with
/// sequential nonces, EIP-3009 `transferWithAuthorization` / `receiveWithAuthorization` /
/// `cancelAuthorization` with random 32-byte nonces and a strict window (validAfter < now < validBefore),
/// and an EIP-712 domain whose name and version are set at deployment (USDC: "USD Coin", "2"). The domain
/// separator is rebuilt if the chain id changes (OpenZeppelin EIP712).
/// @dev Signature code is OpenZeppelin's: ERC3009 (draft) for EIP-3009, EIP712 + ECDSA + Nonces for permit.
/// OpenZeppelin's ERC20Permit is not used because it fixes the EIP-712 version to "1".
contract TestUSD is ERC3009, IERC20Permit, Nonces {
    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    /// @notice The permit's deadline has passed.
    error TestUSDExpiredPermit(uint256 deadline, uint256 timestamp);
    /// @notice The permit was not signed by `owner`.
    error TestUSDInvalidPermitSigner(address signer, address owner);

    /// @param name_ ERC-20 name and EIP-712 domain name (USDC: "USD Coin").
    /// @param symbol_ ERC-20 symbol.
    /// @param version_ EIP-712 domain version (USDC: "2").
    constructor(string memory name_, string memory symbol_, string memory version_)
        ERC20(name_, symbol_)
        EIP712(name_, version_)
    {}

    /// @notice 6, as USDC.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice The EIP-712 domain version, as USDC's `version()`.
    function version() external view returns (string memory) {
        (, , string memory domainVersion, , , , ) = eip712Domain();
        return domainVersion;
    }

    /// @notice Creates `amount` tokens for `to`. Open to anyone: this token exists for local chains and tests.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @inheritdoc IERC20Permit
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        if (block.timestamp > deadline) revert TestUSDExpiredPermit(deadline, block.timestamp);
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(PERMIT_TYPEHASH, owner, spender, value, _useNonce(owner), deadline))
        );
        address signer = ECDSA.recover(digest, v, r, s);
        if (signer != owner) revert TestUSDInvalidPermitSigner(signer, owner);
        _approve(owner, spender, value);
    }

    /// @inheritdoc IERC20Permit
    function nonces(address owner) public view override(IERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    /// @inheritdoc IERC20Permit
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }
}
