// settlement: applies every rail's event (a stream's or a webhook's) to payments, invoices and the ledger, once;
// invoices are how money comes in. The EVM splitter's mirror is in evm.ts, wired by the composition root.

export {
  bookSweepGas,
  type DepositSweeper,
  type FinalSweep,
  type SweepDeps,
  sweepDepositsOnce,
} from "./evm-deposits.ts";
export {
  bookRailGas,
  bookSendGas,
  type GasCost,
  type MinedSendGas,
  type SendGasBooking,
  type SendGasFollower,
  sendGasPassOnce,
  x402GasDetail,
  x402GasId,
} from "./evm-send-gas.ts";
export {
  applyReceived,
  applyReinstated,
  applyReversed,
  type CreateInvoiceResult,
  createInvoice,
  createOpenInvoiceMemory,
  getInvoice,
  type Invoice,
  type InvoicePaymentRefusal,
  type InvoiceRefusal,
  type InvoiceRow,
  type InvoiceStatus,
  invoiceFromRow,
  invoicePaymentRefusalStatus,
  type OpenInvoiceMemory,
  openInvoiceMemoryDefaults,
  type ReceivingRail,
  type SettlementDeps,
  SettlementInvariantError,
  type SubmitInvoicePaymentResult,
  submitInvoicePayment,
} from "./invoices.ts";
export { applyRailEvent, invoicePaid, type RailEventDeps } from "./rail-events.ts";
export {
  applyParkedRailCapital,
  type BookCapitalResult,
  bookRailCapital,
  type CapitalBooking,
  type CapitalDirection,
  type CapitalRefusal,
  capitalDescriptionLengthMax,
  capitalReferenceLengthMax,
  type NativeBalanceReader,
  parkedRailCapitalPassMax,
  type RailBalanceFailure,
  type RailReconciliation,
  type RailReported,
  type ReconciliationDeps,
  railBalances,
  railBalanceTimeoutMs,
  railCapitalLedgerId,
} from "./reconciliation.ts";
