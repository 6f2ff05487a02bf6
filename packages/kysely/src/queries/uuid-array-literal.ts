const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** `{id,id,...}` of the ids that are UUIDs (a cast error would fail the whole query), or undefined if none. */
export function uuidArrayLiteral(ids: readonly string[]): string | undefined {
  const kept = ids.filter((id) => UUID.test(id));
  return kept.length === 0 ? undefined : `{${kept.join(',')}}`;
}
