// A list of every member of a string union, written once as a Record's keys: the compiler refuses the Record when a
// member is left out or one that is no member is written in, so the list follows the union (the API document's
// refusal codes, for one).

/** The keys of `members`, which names each member of `K` once, as an array of `K`. */
export function everyMember<K extends string>(members: Record<K, true>): readonly K[] {
  return Object.keys(members) as K[];
}
