import { describe, expect, it } from "vitest";
import { createBudget } from "./budget.ts";
import { BudgetExceededError } from "./errors.ts";

describe("createBudget", () => {
  it("a budget of exactly the price pays once, then refuses without reserving", () => {
    const budget = createBudget({ usdc: 10_000n });
    budget.reserve("usdc", 10_000n).commit();
    expect(budget.remaining("usdc")).toBe(0n);
    const refused = (() => {
      try {
        budget.reserve("usdc", 10_000n);
      } catch (error) {
        return error;
      }
    })();
    expect(refused).toBeInstanceOf(BudgetExceededError);
    expect(refused).toMatchObject({ code: "budget_exceeded", asset: "usdc", amount: 10_000n, remaining: 0n });
    expect(budget.remaining("usdc")).toBe(0n);
  });

  it("reservations taken together never exceed the total; a released one is free again", () => {
    const budget = createBudget({ usdc: 25n });
    const first = budget.reserve("usdc", 10n);
    const second = budget.reserve("usdc", 10n);
    expect(() => budget.reserve("usdc", 10n)).toThrow(BudgetExceededError);
    second.release();
    budget.reserve("usdc", 10n).commit();
    first.commit();
    expect(budget.remaining("usdc")).toBe(5n);
  });

  it("a commit for less gives the rest back; a reservation is settled once", () => {
    const budget = createBudget({ msat: 1_000n });
    const reservation = budget.reserve("msat", 600n);
    reservation.commit(450n);
    expect(budget.remaining("msat")).toBe(550n);
    expect(() => reservation.release()).toThrow(/already committed or released/);
    expect(() => budget.reserve("msat", 10n).commit(11n)).toThrow(/outside the reservation/);
  });

  it("an asset the budget does not name has nothing; a negative total is refused", () => {
    const budget = createBudget({ usdc: 10n });
    expect(budget.remaining("eurc")).toBe(0n);
    expect(() => budget.reserve("eurc", 1n)).toThrow(BudgetExceededError);
    expect(() => createBudget({ usdc: -1n })).toThrow(/non-negative bigint/);
  });
});
