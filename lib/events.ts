/** The events a QueryCache emits, with their arguments: `cache.on("storeError", (error) => ...)`. */
export interface QueryCacheEvents {
  /** A call was served from the cache (the in-process tier or the store); the entry's key. */
  hit: [key: string];
  /**
   * A call was not served from the cache and its computation ran; the entry's key (the call's label,
   * "PostRepository.findAll", when the cache could not be set up to key it).
   */
  miss: [key: string];
  /** A store call failed or timed out; the caller got fresh data from the database instead. */
  storeError: [error: Error];
  /** Something the cache could not do as asked, said once per message, with what to change. */
  warning: [message: string];
}
