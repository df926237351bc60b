// A promise and the function that resolves it: for a test that holds one step until another has happened.

/** `done` resolves once `release` is called (any number of times). */
export function latch(): { done: Promise<void>; release: () => void } {
  let release!: () => void;
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { done, release };
}
