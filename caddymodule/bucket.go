package caddymodule

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// ---- Token buckets ------------------------------------------------------
//
// A bucket holds up to burst tokens and gains rate tokens per second. A
// request takes its cost (1 for a request, its length for appended bytes);
// with too few tokens it is refused and told how long until they are there.
// A cost larger than the burst could never be paid in one go: it is let
// through when the bucket is full and leaves it in debt (negative), so a
// large append is slowed, not refused forever.

// bucket is one key's tokens at a moment; guarded by its shard's lock.
type bucket struct {
	tokens float64
	at     int64 // clock reading (ns) of tokens
}

// rate is a bucket's refill per second and capacity.
type rate struct {
	perSecond float64
	burst     float64
}

// refill brings b up to now.
func (b *bucket) refill(r rate, now int64) {
	if now > b.at {
		b.tokens = math.Min(r.burst, b.tokens+r.perSecond*float64(now-b.at)/1e9)
		b.at = now
	}
}

// take pays cost if it can; otherwise it returns how long until it could.
func (b *bucket) take(r rate, cost float64, now int64) (bool, time.Duration) {
	b.refill(r, now)
	need := math.Min(cost, r.burst)
	if b.tokens >= need {
		b.tokens -= cost
		return true, 0
	}
	wait := (need - b.tokens) / r.perSecond
	return false, time.Duration(math.Ceil(wait * 1e9))
}

// full says b has refilled to its burst: forgetting it loses nothing, a
// new bucket starts full.
func (b *bucket) full(r rate, now int64) bool {
	return b.tokens+r.perSecond*float64(now-b.at)/1e9 >= r.burst
}

// limiterShards spreads keys over locks so concurrent requests rarely meet.
const limiterShards = 16

// DefaultMaxTrackedKeys is how many keys (client addresses or groups) one
// limit keeps buckets for at most.
const DefaultMaxTrackedKeys = 65536

// limiter is one rate limit's buckets, by key (a client address or a
// placement group). Memory is bounded: a shard that reaches its share of
// maxKeys first forgets its full buckets (which new ones equal); if none is
// full, it forgets one at random, whose key then starts over with a full
// bucket. So the cap should exceed the keys active within one burst's
// refill time.
type limiter struct {
	rate   rate
	clock  func() int64
	seed   maphash.Seed
	perCap int
	shards [limiterShards]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

func newLimiter(r rate, maxKeys int, clock func() int64) *limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxTrackedKeys
	}
	l := &limiter{rate: r, clock: clock, seed: maphash.MakeSeed(), perCap: max(1, maxKeys/limiterShards)}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// take charges cost to key's bucket.
func (l *limiter) take(key string, cost float64) (ok bool, wait time.Duration) {
	l.withBucket(key, func(b *bucket, now int64) { ok, wait = b.take(l.rate, cost, now) })
	return ok, wait
}

// debit charges cost to key's bucket whether or not it has the tokens.
func (l *limiter) debit(key string, cost float64) {
	l.withBucket(key, func(b *bucket, now int64) {
		b.refill(l.rate, now)
		b.tokens -= cost
	})
}

// withBucket runs f on key's bucket (a full one for a new key) under its
// shard's lock, making room in the shard first if it is full.
func (l *limiter) withBucket(key string, f func(b *bucket, now int64)) {
	now := l.clock()
	s := &l.shards[maphash.String(l.seed, key)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[key]
	if b == nil {
		if len(s.buckets) >= l.perCap {
			l.evict(s, now)
		}
		b = &bucket{tokens: l.rate.burst, at: now}
		s.buckets[key] = b
	}
	f(b, now)
}

// evict makes room in a full shard.
func (l *limiter) evict(s *limiterShard, now int64) {
	for k, b := range s.buckets {
		if b.full(l.rate, now) {
			delete(s.buckets, k)
		}
	}
	if len(s.buckets) < l.perCap {
		return
	}
	for k := range s.buckets { // map order is random enough
		delete(s.buckets, k)
		return
	}
}

// size is the number of keys tracked, for tests.
func (l *limiter) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// monotonic is the default clock: nanoseconds since process start.
var processStart = time.Now()

func monotonic() int64 { return int64(time.Since(processStart)) }

// sessionCounter counts a key's concurrent live reads; a key at zero is
// forgotten, so it holds no more entries than there are open requests.
type sessionCounter struct {
	mu    sync.Mutex
	limit int
	n     map[string]int
}

func newSessionCounter(limit int) *sessionCounter {
	return &sessionCounter{limit: limit, n: make(map[string]int)}
}

// enter counts one in, unless key already has limit.
func (c *sessionCounter) enter(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.limit {
		return false
	}
	c.n[key]++
	return true
}

func (c *sessionCounter) leave(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
		return
	}
	c.n[key]--
}
