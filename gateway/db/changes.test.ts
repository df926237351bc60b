// The change bus in one process (PGlite): an announcement reaches the subscribers once its transaction has
// committed, never while it runs nor when it rolls back; one broken subscriber does not silence the others;
// payloads are checked both ways. Across processes on PostgreSQL: test/http/api-key-revocation.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SwitchyardError, silentLogger } from "../../core/index.ts";
import {
  type Change,
  ChangeBusError,
  type ChangeEvent,
  changeListenerLimitsDefaults,
  changeOfPayload,
  createLocalChangeBus,
  openPostgresChangeBus,
  payloadOf,
  transactionAnnouncing,
} from "./changes.ts";
import { type Db, openPglite } from "./index.ts";

let db: Db;

beforeAll(async () => {
  db = await openPglite(undefined);
  await db.exec("CREATE TABLE things (id text PRIMARY KEY)");
}, 120_000);

afterAll(async () => {
  await db?.close();
});

const revoked: Change = { kind: "api_key_revoked", digest: `${"A".repeat(43)}=` };
const accountChanged: Change = { kind: "account_changed", id: "acct_1" };

describe("the local change bus", () => {
  it("delivers what a transaction announced once it has committed, synchronously, in order", async () => {
    const changes = createLocalChangeBus();
    const heard: ChangeEvent[] = [];
    changes.subscribe((event) => heard.push(event));
    const seenInside: number[] = [];
    await transactionAnnouncing({ db, changes }, async (tx, announce) => {
      await tx.query("INSERT INTO things (id) VALUES ('delivered')");
      await announce(revoked);
      await announce(accountChanged);
      seenInside.push(heard.length);
    });
    expect(seenInside).toEqual([0]); // nothing while the transaction ran
    expect(heard).toEqual([revoked, accountChanged]); // all of it when transactionAnnouncing returned
    await changes.close();
  });

  it("delivers nothing when the transaction rolls back", async () => {
    const changes = createLocalChangeBus();
    const heard: ChangeEvent[] = [];
    changes.subscribe((event) => heard.push(event));
    await db.query("INSERT INTO things (id) VALUES ('taken')");
    await expect(
      transactionAnnouncing({ db, changes }, async (tx, announce) => {
        await announce(revoked);
        await tx.query("INSERT INTO things (id) VALUES ('taken')"); // a duplicate key: rolls back
      }),
    ).rejects.toThrow();
    expect(heard).toEqual([]);
    await changes.close();
  });

  it("keeps delivering to the others when one subscriber throws; stops after unsubscribe and close", async () => {
    const changes = createLocalChangeBus({ logger: silentLogger });
    const first: ChangeEvent[] = [];
    const last: ChangeEvent[] = [];
    const stopFirst = changes.subscribe((event) => first.push(event));
    changes.subscribe(() => {
      throw new Error("broken subscriber");
    });
    changes.subscribe((event) => last.push(event));
    changes.committed([accountChanged]);
    expect(first).toEqual([accountChanged]);
    expect(last).toEqual([accountChanged]);
    stopFirst();
    changes.committed([revoked]);
    expect(first).toEqual([accountChanged]);
    expect(last).toEqual([accountChanged, revoked]);
    expect(changes.listening()).toBe(true);
    await changes.close();
    expect(changes.listening()).toBe(false);
    changes.committed([revoked]);
    expect(last).toEqual([accountChanged, revoked]);
  });

  it("refuses to announce a malformed change, as the PostgreSQL bus does", async () => {
    const changes = createLocalChangeBus();
    const malformed = { kind: "api_key_revoked", digest: "sk_test_not_a_digest" } as Change;
    const error = await transactionAnnouncing({ db, changes }, (_tx, announce) => announce(malformed)).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ChangeBusError);
    expect(error).toBeInstanceOf(SwitchyardError);
    await changes.close();
  });
});

describe("change payloads", () => {
  it("round-trip every kind, small and without anything but the kind and its key", () => {
    for (const change of [revoked, accountChanged]) {
      const payload = payloadOf(change);
      expect(payload.length).toBeLessThan(100);
      expect(changeOfPayload(payload)).toEqual(change);
    }
  });

  it("are null when not one of the known set: garbage, another kind, a field too many or malformed", () => {
    expect(changeOfPayload("not json")).toBeNull();
    expect(changeOfPayload("null")).toBeNull();
    expect(changeOfPayload('{"kind":"tenant_renamed","id":"ten_1"}')).toBeNull();
    expect(changeOfPayload('{"kind":"account_changed","id":"acct_1","name":"x"}')).toBeNull();
    expect(changeOfPayload('{"kind":"account_changed","id":""}')).toBeNull();
    expect(changeOfPayload('{"kind":"api_key_revoked","digest":"short="}')).toBeNull();
  });
});

describe("the PostgreSQL change bus", () => {
  it("fails to open with a ChangeBusError when it cannot listen", async () => {
    const error = await openPostgresChangeBus(
      { logger: silentLogger },
      { url: "postgres://postgres@127.0.0.1:1/postgres", limits: changeListenerLimitsDefaults },
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChangeBusError);
    expect((error as ChangeBusError).shortMessage).toBe("changes: could not listen on PostgreSQL");
  });
});
