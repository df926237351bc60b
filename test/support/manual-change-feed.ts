// A change feed a test drives by hand: it delivers what the test publishes, and says it is listening or not as the
// test sets it — for the caches that follow another process's changes (accounts, API keys).
import type { ChangeEvent, ChangeFeed, ChangeSubscriber } from "../../gateway/db/index.ts";

export type ManualChangeFeed = {
  feed: ChangeFeed;
  /** Delivers `event` to every subscriber now. */
  publish(event: ChangeEvent): void;
  setListening(listening: boolean): void;
  /** How many subscribe and have not stopped. */
  subscriberCount(): number;
};

export function manualChangeFeed(): ManualChangeFeed {
  const subscribers: ChangeSubscriber[] = [];
  let listening = true;
  return {
    feed: {
      subscribe(subscriber) {
        subscribers.push(subscriber);
        return () => {
          subscribers.splice(subscribers.indexOf(subscriber), 1);
        };
      },
      listening: () => listening,
    },
    publish(event) {
      for (const subscriber of [...subscribers]) subscriber(event);
    },
    setListening(value) {
      listening = value;
    },
    subscriberCount: () => subscribers.length,
  };
}
