/**
 * A query runner's PostgreSQL session: the pg client it holds. Transactions and SET outlive the
 * runner (pool connections are handed to the next runner as they are), so state is kept per
 * session; a runner that has not connected yet stands for itself.
 */
export function sessionOf(runner: object): object {
  return (runner as { databaseConnection?: object }).databaseConnection ?? runner;
}

/**
 * Whether the server reported the session inside a transaction block (open or failed) when its
 * last statement ended, from the ReadyForQuery status pg keeps; undefined when the driver does not
 * expose it. It is the truth a parse of the SQL can only approximate.
 */
export function serverInTransaction(runner: object): boolean | undefined {
  const client = (
    runner as {
      databaseConnection?: { getTransactionStatus?(): string | null; _txStatus?: string | null };
    }
  ).databaseConnection;
  const status = client?.getTransactionStatus?.() ?? client?._txStatus;
  if (status === "I") return false;
  if (status === "T" || status === "E") return true;
  return undefined;
}
