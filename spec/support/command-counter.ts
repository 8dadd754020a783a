import type Redis from "ioredis";

/**
 * Counts the commands an ioredis client sends, pipelines and scripts included, by observing its
 * sendCommand (every command goes through it); the commands themselves are untouched. Returns a
 * function that reads the count so far.
 */
export function countCommands(redis: Redis): () => number {
  let sent = 0;
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((...args: Parameters<Redis["sendCommand"]>) => {
    sent++;
    return send(...args);
  }) as Redis["sendCommand"];
  return () => sent;
}
