// Payees: whom a tenant pays and the ways each can be paid (issue #20). The API's resource is
// gateway/http/resources/payees.ts; payments read a payee's methods through payeeMethods.
export {
  firstDuplicate,
  normalizeMethod,
  type PayeeDestination,
  type PayeeMethod,
  type PayeeMethodKind,
  payeeMethodsMax,
  splitMethods,
} from "./methods.ts";
export {
  createPayee,
  getPayee,
  listPayees,
  type Payee,
  type PayeeRefusal,
  type PayeeResult,
  type PayeeRow,
  type PayeesDeps,
  payeeColumns,
  payeeFromRow,
  payeeMethods,
  payeesListLimitDefault,
  payeesListLimitMax,
  updatePayee,
} from "./payees.ts";
