// A Map used as a bounded memory: the entry set least recently is the one forgotten first.

/**
 * Sets `key` in `map`, first forgetting the oldest entries while the map holds `max` or more (max ≥ 1). A key the
 * map holds already is set again as the newest entry, and nothing else is forgotten for it.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (map.delete(key)) {
    map.set(key, value);
    return;
  }
  while (map.size >= max) {
    const oldest = map.keys().next();
    if (oldest.done === true) break;
    map.delete(oldest.value);
  }
  map.set(key, value);
}
