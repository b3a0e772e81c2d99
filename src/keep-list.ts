/**
 * keep_file_list: paths relative to root_dir that nothing the agent removes may touch, on disk
 * (sync/reconcile.ts) or in a bucket (publish/replica.ts). An entry is an exact path, or a
 * directory prefix ending in "/".
 */
export function isKept(path: string, keep: readonly string[]): boolean {
  return keep.some((k) => path === k || (k.endsWith("/") && path.startsWith(k)));
}
