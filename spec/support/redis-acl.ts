import type Redis from "ioredis";

/**
 * The least a user of the library may run on a single Redis, each one needed (the ACL spec fails
 * without any of them):
 * - EVALSHA, and EVAL the first time a server lacks a script;
 * - inside the scripts: GET, SET, MGET, DEL (of an outdated entry), TIME, INFO (whether Redis may
 *   evict versions) and EXPIRE (a row version lives as long as the entries depending on it);
 * - UNLINK for delete(), SCAN and UNLINK for clear();
 * - INFO, which ioredis sends on connecting (its ready check), unless enableReadyCheck is off;
 * - with the in-process tier: PUBLISH (from the bump script) and SUBSCRIBE, on its channel.
 * Redis Cluster adds WAIT and CLUSTER (ioredis reads CLUSTER SLOTS).
 */
export const LIBRARY_COMMANDS = [
  "evalsha",
  "eval",
  "get",
  "set",
  "mget",
  "del",
  "time",
  "unlink",
  "scan",
  "info",
  "expire",
  "publish",
  "subscribe",
] as const;

/**
 * Creates (or resets) an ACL user that may run only the library's commands, on keys and channels
 * of one namespace.
 */
export async function createNamespaceUser(
  admin: Redis,
  user: string,
  password: string,
  namespace: string,
): Promise<void> {
  await admin.call(
    "ACL",
    "SETUSER",
    user,
    "reset",
    "on",
    `>${password}`,
    `~${namespace}:*`,
    `&${namespace}:*`,
    "-@all",
    ...LIBRARY_COMMANDS.map((command) => `+${command}`),
  );
}

export interface AclDenial {
  reason: string;
  object: string;
  username: string;
}

/** The entries of ACL LOG (denied commands, keys and channels), newest first. */
export async function aclDenials(admin: Redis): Promise<AclDenial[]> {
  const entries = (await admin.call("ACL", "LOG")) as unknown[][];
  return entries.map((flat) => {
    const entry: Record<string, unknown> = {};
    for (let i = 0; i < flat.length; i += 2) entry[String(flat[i])] = flat[i + 1];
    return {
      reason: String(entry.reason),
      object: String(entry.object),
      username: String(entry.username),
    };
  });
}
