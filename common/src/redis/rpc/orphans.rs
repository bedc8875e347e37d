//! Handing over the requests a dead server had read but not answered: the moment the admin's
//! reconciler learns a worker is gone, the entries pending for its consumer are added to their
//! stream again (same payload, same deadline and reply list) and acknowledged, so a live replica
//! reads them at once instead of after the idle time of a reclaim (`XAUTOCLAIM`, which stays
//! the backstop).

use crate::redis::Redis;

/// The consumer group the inference workers read their streams with.
pub const SERVING_GROUP: &str = "inference";
/// Most entries handed over per call (a dead replica had at most a few batches read).
const MOST: u32 = 10_000;

/// KEYS[1] stream; ARGV: group, dead consumer, most. Returns how many entries were re-added.
const REQUEUE: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
local moved = 0
for _, p in ipairs(pending) do
  local id = p[1]
  local entries = redis.call('XRANGE', KEYS[1], id, id)
  if #entries == 1 then
    redis.call('XADD', KEYS[1], '*', unpack(entries[1][2]))
    moved = moved + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
if #pending < tonumber(ARGV[3]) then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return moved
";

/// Re-adds to `stream` the entries its `group`'s `consumer` (a dead server) read but never
/// answered; returns how many. A stream or group that does not exist has nothing to hand over.
pub async fn requeue_orphans(
    redis: &Redis,
    stream: &str,
    group: &str,
    consumer: &str,
) -> redis::RedisResult<u64> {
    // EVAL rather than EVALSHA: it runs only when a worker dies.
    let moved: redis::RedisResult<u64> = redis
        .retrying(|mut conn| async move {
            redis::cmd("EVAL")
                .arg(REQUEUE)
                .arg(1)
                .arg(stream)
                .arg(group)
                .arg(consumer)
                .arg(MOST)
                .query_async(&mut conn)
                .await
        })
        .await;
    match moved {
        // No such stream or group: nothing was read from it.
        Err(e) if e.code() == Some("NOGROUP") => Ok(0),
        other => other,
    }
}
