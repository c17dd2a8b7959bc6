#include "rsdb.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#include <cstring>
#include <limits>

namespace rsdb {

int core_version() { return kStateVersion; }

namespace {

constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
#ifndef RSDB_PREFETCH_PICKS
#define RSDB_PREFETCH_PICKS 2
#endif
#ifndef RSDB_PREFETCH_LINES
#define RSDB_PREFETCH_LINES 2
#endif
// Upcoming picks whose read heads are prefetched, and cache lines per pick. On the
// development VM a sweep (1-16 picks, 2-128 lines) moved throughput by less than the
// noise; more than 4 picks cost a few percent (docs/rsdb.md, "Performance").
constexpr uint64_t kPrefetchPicks = RSDB_PREFETCH_PICKS;
constexpr int64_t kPrefetchLines = RSDB_PREFETCH_LINES;
// Sources scored by least squares when mixing; any beyond fall back to first-eligible.
constexpr int64_t kMaxMixSources = 256;

// splitmix64's output function (Steele, Lea, Flood 2014): a strong 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform index in [0, n) from 32 random bits (Lemire's multiply-shift; bias < n / 2^32).
inline int64_t bounded(uint64_t x, int64_t n) {
  return static_cast<int64_t>(((x >> 32) * static_cast<uint64_t>(n)) >> 32);
}

// Copy kernels: widen/copy tokens into int32 and return the largest id seen (as unsigned),
// so the vocabulary check costs one max per vector in the same pass. Cloned for AVX2
// (pmaxud) with a baseline fallback chosen at load time.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(RSDB_NO_CLONES)
#define RSDB_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RSDB_CLONES
#endif

// Fused copy + max (measured against libc memcpy followed by a max pass over the
// chunk: equal on a corpus larger than the caches, 10% slower in cache).
template <class TokT>
inline uint32_t copy_body(const TokT* __restrict src, int32_t* __restrict dst, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = src[i];
    dst[i] = static_cast<int32_t>(v);
    m = v > m ? v : m;
  }
  return m;
}

RSDB_CLONES uint32_t copy_u32(const uint32_t* __restrict src, int32_t* __restrict dst, int64_t n) {
  return copy_body(src, dst, n);
}

RSDB_CLONES uint32_t copy_u16(const uint16_t* __restrict src, int32_t* __restrict dst, int64_t n) {
  return copy_body(src, dst, n);
}

RSDB_CLONES void fill_i64(int64_t* __restrict dst, int64_t n, int64_t v) {
  for (int64_t i = 0; i < n; ++i) dst[i] = v;
}

RSDB_CLONES void fill_i32(int32_t* __restrict dst, int64_t n, int32_t v) {
  for (int64_t i = 0; i < n; ++i) dst[i] = v;
}

RSDB_CLONES void fill_i16(int16_t* __restrict dst, int64_t n, int16_t v) {
  for (int64_t i = 0; i < n; ++i) dst[i] = v;
}

// Positions 0..n-1. The counter is 32-bit (n <= L1 < 2^31) so the loop is one vector
// add per eight positions, not a 64-bit induction narrowed per element.
RSDB_CLONES void fill_iota(int32_t* __restrict dst, int32_t n) {
  for (int32_t i = 0; i < n; ++i) dst[i] = i;
}

// Largest id of a chunk of 32-bit tokens (the vocabulary check), read before the
// chunk is copied: this pass waits on memory, the copy then reads from the cache.
RSDB_CLONES uint32_t max_u32(const uint32_t* __restrict src, int64_t n) {
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) m = src[i] > m ? src[i] : m;
  return m;
}

// Block stores for the default batch. On x86-64 these are the string instructions
// (rep movsb / rep stos{b,w,l,q}): with fast strings (ERMSB) the CPU writes whole cache
// lines without reading them first, where vector stores fetch every output line they
// miss (read-for-ownership). The output arrays of two batches (the one the caller
// holds and the one being filled) about fill the L2 cache, so most output lines miss;
// measured +7% for the default batch on the development VM. Elsewhere, and in the
// sanitizer build (whose checks do not see inside inline assembly), plain loops.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RSDB_NO_ASM)
inline void copy_bytes(void* dst, const void* src, size_t n) {
  asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}
inline void store_u64(void* dst, uint64_t v, size_t n) {
  asm volatile("rep stosq" : "+D"(dst), "+c"(n) : "a"(v) : "memory");
}
inline void store_u32(void* dst, uint32_t v, size_t n) {
  asm volatile("rep stosl" : "+D"(dst), "+c"(n) : "a"(v) : "memory");
}
inline void store_u16(void* dst, uint16_t v, size_t n) {
  asm volatile("rep stosw" : "+D"(dst), "+c"(n) : "a"(v) : "memory");
}
inline void store_u8(void* dst, uint8_t v, size_t n) {
  asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(v) : "memory");
}
#else
inline void copy_bytes(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
inline void store_u64(void* dst, uint64_t v, size_t n) { fill_i64(static_cast<int64_t*>(dst), static_cast<int64_t>(n), static_cast<int64_t>(v)); }
inline void store_u32(void* dst, uint32_t v, size_t n) { fill_i32(static_cast<int32_t*>(dst), static_cast<int64_t>(n), static_cast<int32_t>(v)); }
inline void store_u16(void* dst, uint16_t v, size_t n) { fill_i16(static_cast<int16_t*>(dst), static_cast<int64_t>(n), static_cast<int16_t>(v)); }
inline void store_u8(void* dst, uint8_t v, size_t n) { std::memset(dst, v, n); }
#endif

// 16-bit tokens (Megatron): the widening copy and all four metadata arrays of one chunk
// in one pass, so the metadata stores overlap the token loads, which wait on memory.
template <class TokT, class DocT>
inline uint32_t copy_meta_body(const TokT* __restrict src, int32_t* __restrict tok, int32_t* __restrict pos,
                               DocT* __restrict doc, int16_t* __restrict sid, bool* __restrict mask, int32_t n,
                               DocT d, int16_t s) {
  uint32_t m = 0;
  for (int32_t i = 0; i < n; ++i) {
    const uint32_t v = src[i];
    tok[i] = static_cast<int32_t>(v);
    m = v > m ? v : m;
    pos[i] = i;
    doc[i] = d;
    sid[i] = s;
    mask[i] = true;
  }
  return m;
}

#define RSDB_COPY_META(NAME, TokT, DocT)                                                                    \
  RSDB_CLONES uint32_t NAME(const TokT* __restrict src, int32_t* __restrict tok, int32_t* __restrict pos, \
                            DocT* __restrict doc, int16_t* __restrict sid, bool* __restrict mask,        \
                            int32_t n, DocT d, int16_t s) {                                              \
    return copy_meta_body<TokT, DocT>(src, tok, pos, doc, sid, mask, n, d, s);                          \
  }
RSDB_COPY_META(copy_meta_u16_d32, uint16_t, int32_t)
RSDB_COPY_META(copy_meta_u16_d64, uint16_t, int64_t)
#undef RSDB_COPY_META

inline const char* token_ptr(const View& v, int64_t i) {
  const size_t item = v.dtype == kU16 ? 2 : 4;
  return static_cast<const char*>(v.tokens) + static_cast<size_t>(i) * item;
}

}  // namespace

int populate(const void* addr, int64_t nbytes) {
#if defined(__linux__)
  if (nbytes <= 0) return 0;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  const uintptr_t lo = a & ~(page - 1);
  const uintptr_t hi = (a + static_cast<uintptr_t>(nbytes) + page - 1) & ~(page - 1);
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  return madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) == 0 ? 0 : errno;
#else
  (void)addr;
  (void)nbytes;
  return 0;
#endif
}

bool resident(const void* addr, int64_t nbytes) {
#if defined(__linux__)
  if (nbytes <= 0) return true;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  const uintptr_t lo = a & ~(page - 1);
  const uintptr_t hi = (a + static_cast<uintptr_t>(nbytes) + page - 1) & ~(page - 1);
  const size_t pages = (hi - lo) / page;
  unsigned char buf[1024];
  for (size_t done = 0; done < pages;) {
    const size_t k = std::min<size_t>(pages - done, sizeof(buf));
    if (mincore(reinterpret_cast<void*>(lo + done * page), k * page, buf) != 0) return false;
    for (size_t i = 0; i < k; ++i)
      if (!(buf[i] & 1)) return false;
    done += k;
  }
  return true;
#else
  (void)addr;
  (void)nbytes;
  return false;
#endif
}

uint64_t permute(uint64_t i, uint64_t n, const uint64_t keys[4]) {
  if (n <= 1) return 0;
  int bits = 64 - __builtin_clzll(n - 1);  // ceil(log2 n)
  int half = (bits + 1) / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t x = i;
  // Cycle-walking: a balanced Feistel network is a bijection on [0, 2^(2*half)); repeat
  // until the value lands in [0, n), which restricts it to a bijection on [0, n).
  do {
    uint64_t l = x >> half, r = x & mask;
    for (int k = 0; k < 4; ++k) {
      uint64_t f = mix64(r ^ keys[k]) & mask;
      uint64_t t = l ^ f;
      l = r;
      r = t;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}

Core::Core(const Config& cfg) : cfg_(cfg) {
  if (cfg_.buffer_docs < 1) cfg_.buffer_docs = 1;
  if (cfg_.refill_batch < 1) cfg_.refill_batch = 1;
  if (cfg_.refill_batch > cfg_.buffer_docs) cfg_.refill_batch = cfg_.buffer_docs;
  src_.resize(static_cast<size_t>(cfg_.n_sources));
  weights_.assign(static_cast<size_t>(cfg_.n_phases * cfg_.n_sources), 1.0 / cfg_.n_sources);
  emitted_.assign(static_cast<size_t>(cfg_.n_phases * cfg_.n_sources), 0);
  const size_t cap = static_cast<size_t>(cfg_.buffer_docs);
  p_cur_.resize(cap);
  p_end_.resize(cap);
  p_live_.assign(cap, 0);
  p_view_.resize(cap);
  p_src_.resize(cap);
  p_start_.resize(cap);
  p_doc_.resize(cap);
  p_gid_.resize(cap);
  iota_.resize(static_cast<size_t>(cfg_.seq_len1));
  for (int64_t i = 0; i < cfg_.seq_len1; ++i) iota_[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  rng_ = mix64(mix64(cfg_.seed ^ 0x5253444252534442ULL) + static_cast<uint64_t>(cfg_.stream_index) * kGamma);
  for (int32_t s = 0; s < cfg_.n_sources; ++s) start_epoch(src_[static_cast<size_t>(s)], s);
}

void Core::add_range(int32_t source, int32_t view, int64_t begin, int64_t end, int64_t doc_base) {
  if (view >= static_cast<int32_t>(views_.size())) views_.resize(static_cast<size_t>(view) + 1);
  SourceState& s = src_.at(static_cast<size_t>(source));
  if (end <= begin) return;
  s.blocks_stale = true;
  views_[static_cast<size_t>(view)].range_begin = begin;
  views_[static_cast<size_t>(view)].range_end = end;
  s.ranges.push_back(Range{view, begin, end, doc_base, s.n_local});
  s.n_local += end - begin;
}

void Core::set_view(int32_t view, const int64_t* offsets, int64_t n_docs, const void* tokens,
                    int64_t n_tokens, int dtype, uint64_t bound) {
  if (view >= static_cast<int32_t>(views_.size())) views_.resize(static_cast<size_t>(view) + 1);
  View& v = views_[static_cast<size_t>(view)];
  v.offsets = offsets;
  v.n_docs = n_docs;
  v.tokens = tokens;
  v.n_tokens = n_tokens;
  v.dtype = dtype;
  v.bound = bound;
  v.ready = true;
  init_pop(v);
}

void Core::init_pop(View& v) {
  // The token range whose windows populate_doc may map: this stream's documents of the
  // view, or the whole view once the stream carries work from other streams' slices.
  v.pop_lo = v.pop_hi = 0;
  v.pop_done.clear();
  if (cfg_.populate_window > 0 && v.ready) {
    const int64_t b = pop_whole_ ? 0 : v.range_begin, e = pop_whole_ ? v.n_docs : v.range_end;
    if (0 <= b && b < e && e <= v.n_docs) {
      const int64_t lo = v.offsets[b], hi = v.offsets[e];
      if (0 <= lo && lo < hi && hi <= v.n_tokens) {
        v.pop_lo = lo;
        v.pop_hi = hi;
      }
    }
    if (v.pop_hi > v.pop_lo) {
      const int64_t item = v.dtype == kU16 ? 2 : 4;
      const int64_t windows = (v.pop_hi * item) / cfg_.populate_window - (v.pop_lo * item) / cfg_.populate_window + 1;
      v.pop_done.assign(static_cast<size_t>((windows + 63) / 64), 0);
    }
  }
}

void Core::populate_doc(View& v, int64_t off, int64_t end) {
  // Windows are aligned in bytes from the start of the view's token buffer; the first
  // one of this stream's range has index 0 in pop_done.
  const int64_t item = v.dtype == kU16 ? 2 : 4;
  const int64_t W = cfg_.populate_window;
  const int64_t first = (v.pop_lo * item) / W;
  const int64_t a = std::max(off, v.pop_lo) * item, b = std::min(end, v.pop_hi) * item;
  if (b <= a) return;
  for (int64_t w = a / W; w <= (b - 1) / W; ++w) {
    const int64_t k = w - first;
    uint64_t& bits = v.pop_done[static_cast<size_t>(k >> 6)];
    const uint64_t bit = uint64_t{1} << (k & 63);
    if (bits & bit) continue;
    bits |= bit;
    const int64_t lo = std::max(w * W, v.pop_lo * item), hi = std::min((w + 1) * W, v.pop_hi * item);
    const char* p = static_cast<const char*>(v.tokens) + lo;
    // Only windows already in the page cache: populating one that is not would read
    // the whole window from disk for one document (the kernel's own read-around on a
    // page fault is much smaller), which multiplies the I/O of a corpus that does not
    // fit in memory. Such windows keep demand faults.
    if (!resident(p, hi - lo)) continue;
    if (populate(p, hi - lo) != 0) {
      populate_ok_ = false;  // not supported here: demand faults from now on
      return;
    }
  }
}

void Core::set_weights(const std::vector<double>& w) {
  const int64_t ns = cfg_.n_sources;
  for (int64_t p = 0; p < cfg_.n_phases; ++p) {
    double total = 0;
    for (int64_t s = 0; s < ns; ++s) total += std::max(0.0, w.at(static_cast<size_t>(p * ns + s)));
    for (int64_t s = 0; s < ns; ++s) {
      double x = std::max(0.0, w[static_cast<size_t>(p * ns + s)]);
      weights_[static_cast<size_t>(p * ns + s)] = total > 0 ? x / total : 0.0;
    }
  }
}

void epoch_keys(uint64_t seed, int32_t idx, int64_t stream, uint64_t epoch, uint64_t keys[4]) {
  uint64_t h = mix64(seed ^ 0x4645495354454c21ULL);
  h = mix64(h ^ (static_cast<uint64_t>(idx) * kGamma));
  h = mix64(h ^ (static_cast<uint64_t>(stream) * 0xd1b54a32d192ed03ULL));
  h = mix64(h ^ (epoch * 0x8cb92ba72f3d8dd7ULL));
  for (int k = 0; k < 4; ++k) keys[k] = mix64(h + static_cast<uint64_t>(k + 1) * kGamma);
}

void Core::epoch_keys(int32_t idx, int64_t stream, uint64_t epoch, uint64_t keys[4]) const {
  rsdb::epoch_keys(cfg_.seed, idx, stream, epoch, keys);
}

void Core::start_epoch(SourceState& s, int32_t idx) {
  epoch_keys(idx, cfg_.stream_index, s.epoch, s.keys);
  s.blocks_stale = true;
  ++s.tick;
}

namespace {
// Salts that derive the shard order and each block's document order from an epoch's
// keys (so block mode needs no state beyond (epoch, cursor) either).
constexpr uint64_t kShardSalt = 0x5253444253484152ULL;
constexpr uint64_t kBlockGamma = 0xd6e8feb86659fd93ULL;
}  // namespace

void Core::make_blocks(const std::vector<Range>& ranges, const uint64_t keys[4], Blocks& b) const {
  b.order.clear();
  b.start.clear();
  if (cfg_.block_shards <= 0 || ranges.empty()) return;
  const uint64_t nr = ranges.size();
  uint64_t ka[4];
  for (int k = 0; k < 4; ++k) ka[k] = mix64(keys[k] ^ kShardSalt);
  b.order.resize(nr);
  b.start.resize(nr + 1);
  int64_t pos = 0;
  for (uint64_t p = 0; p < nr; ++p) {
    const uint64_t r = permute(p, nr, ka);
    b.order[p] = static_cast<int32_t>(r);
    b.start[p] = pos;
    pos += ranges[r].end - ranges[r].begin;  // >= 1: empty ranges are never laid out
  }
  b.start[nr] = pos;
}

void Core::ensure_blocks(SourceState& S) {
  if (!S.blocks_stale) return;
  make_blocks(S.ranges, S.keys, S.blocks);
  S.blocks_stale = false;
}

void Core::block_of(const Blocks& b, uint64_t c, int64_t& first, int64_t& last) const {
  const int64_t nr = static_cast<int64_t>(b.order.size());
  const int64_t p = std::upper_bound(b.start.begin(), b.start.begin() + nr, static_cast<int64_t>(c)) - b.start.begin() - 1;
  const int64_t W = cfg_.block_shards;
  first = (p / W) * W;
  last = std::min(first + W, nr);
}

int64_t Core::order_at(const std::vector<Range>& ranges, int64_t n_local, const uint64_t keys[4], const Blocks& b,
                       uint64_t c) const {
  if (b.order.empty()) return static_cast<int64_t>(permute(c, static_cast<uint64_t>(n_local), keys));
  int64_t first, last;
  block_of(b, c, first, last);
  const int64_t base = b.start[static_cast<size_t>(first)];
  const int64_t m = b.start[static_cast<size_t>(last)] - base;
  uint64_t kb[4];
  const uint64_t blk = static_cast<uint64_t>(first / cfg_.block_shards) + 1;
  for (int k = 0; k < 4; ++k) kb[k] = mix64(keys[k] + blk * kBlockGamma);
  const int64_t at = base + static_cast<int64_t>(permute(c - static_cast<uint64_t>(base), static_cast<uint64_t>(m), kb));
  const int64_t p = std::upper_bound(b.start.begin() + first, b.start.begin() + last, at) - b.start.begin() - 1;
  const Range& r = ranges[static_cast<size_t>(b.order[static_cast<size_t>(p)])];
  return r.local_start + (at - b.start[static_cast<size_t>(p)]);
}

std::vector<int64_t> Core::first_use(int32_t s, uint64_t epoch, int64_t walk) const {
  std::vector<int64_t> out;
  if (s < 0 || s >= cfg_.n_sources) return out;
  const SourceState& S = src_[static_cast<size_t>(s)];
  const size_t nr = S.ranges.size();
  if (nr == 0) return out;
  uint64_t keys[4];
  epoch_keys(s, cfg_.stream_index, epoch, keys);
  Blocks b;
  make_blocks(S.ranges, keys, b);
  std::vector<uint8_t> seen(nr, 0);
  auto range_of = [&](int64_t j) {
    return static_cast<size_t>(std::upper_bound(S.ranges.begin(), S.ranges.end(), j,
                                                [](int64_t x, const Range& r) { return x < r.local_start; }) -
                               S.ranges.begin() - 1);
  };
  if (b.order.empty()) {  // one permutation: walk it until every shard was seen
    size_t got = 0;
    const int64_t n = std::min(S.n_local, walk);
    for (int64_t c = 0; c < n && got < nr; ++c) {
      const size_t r = range_of(static_cast<int64_t>(permute(static_cast<uint64_t>(c), static_cast<uint64_t>(S.n_local), keys)));
      if (seen[r]) continue;
      seen[r] = 1;
      ++got;
      out.push_back(c);
      out.push_back(S.ranges[r].view);
    }
    for (size_t r = 0; r < nr; ++r)
      if (!seen[r]) {
        out.push_back(S.n_local + static_cast<int64_t>(r));
        out.push_back(S.ranges[r].view);
      }
    return out;
  }
  for (int64_t first = 0; first < static_cast<int64_t>(nr); first += cfg_.block_shards) {
    const int64_t last = std::min<int64_t>(first + cfg_.block_shards, static_cast<int64_t>(nr));
    for (int64_t c = b.start[static_cast<size_t>(first)], got = 0; c < b.start[static_cast<size_t>(last)] && got < last - first &&
                                                               c - b.start[static_cast<size_t>(first)] < walk; ++c) {
      const size_t r = range_of(order_at(S.ranges, S.n_local, keys, b, static_cast<uint64_t>(c)));
      if (seen[r]) continue;
      seen[r] = 1;
      ++got;
      out.push_back(c);
      out.push_back(S.ranges[r].view);
    }
    for (int64_t p = first; p < last; ++p) {
      const size_t r = static_cast<size_t>(b.order[static_cast<size_t>(p)]);
      if (seen[r]) continue;
      seen[r] = 1;
      out.push_back(b.start[static_cast<size_t>(last)] - 1);
      out.push_back(S.ranges[r].view);
    }
  }
  return out;
}

std::vector<int32_t> Core::views_in_use() {
  std::vector<uint8_t> mark(views_.size(), 0);
  for (int64_t k = 0; k < cfg_.buffer_docs; ++k)
    if (p_live_[k]) mark[static_cast<size_t>(p_view_[k])] = 1;
  std::vector<Range> rs;
  for (int32_t s = 0; s < cfg_.n_sources; ++s) {
    SourceState& S = src_[static_cast<size_t>(s)];
    for (size_t i = S.partial_i; i < S.partial.size(); ++i) mark[static_cast<size_t>(S.partial[i].view)] = 1;
    if (S.carry_i < S.carry.size()) {  // carried pieces: every shard of the piece in progress
      const Piece& p = S.carry[S.carry_i];
      int64_t n = 0;
      layout(s, p.streams, p.stream, rs, n);
      for (const Range& r : rs) mark[static_cast<size_t>(r.view)] = 1;
    }
    if (S.exhausted || S.n_local == 0) continue;
    if (cfg_.block_shards <= 0) {
      for (const Range& r : S.ranges) mark[static_cast<size_t>(r.view)] = 1;
      continue;
    }
    ensure_blocks(S);
    const Blocks* b = &S.blocks;
    uint64_t at = S.cursor;
    Blocks next;
    if (S.cursor >= static_cast<uint64_t>(S.n_local)) {  // through this epoch: the next one's first block
      if (cfg_.epochs > 0 && S.epoch + 1 >= static_cast<uint64_t>(cfg_.epochs)) continue;
      uint64_t keys[4];
      epoch_keys(s, cfg_.stream_index, S.epoch + 1, keys);
      make_blocks(S.ranges, keys, next);
      b = &next;
      at = 0;
    }
    int64_t first, last;
    block_of(*b, at, first, last);
    for (int64_t p = first; p < last; ++p)
      mark[static_cast<size_t>(S.ranges[static_cast<size_t>(b->order[static_cast<size_t>(p)])].view)] = 1;
  }
  std::vector<int32_t> out;
  for (size_t v = 0; v < mark.size(); ++v)
    if (mark[v]) out.push_back(static_cast<int32_t>(v));
  return out;
}

bool Core::release_view(int32_t view) {
  if (view < 0 || view >= static_cast<int32_t>(views_.size())) return false;
  for (int64_t k = 0; k < cfg_.buffer_docs; ++k)
    if (p_live_[k] && p_view_[k] == view) return false;
  View& v = views_[static_cast<size_t>(view)];
  v.offsets = nullptr;
  v.tokens = nullptr;
  v.n_docs = v.n_tokens = 0;
  v.ready = false;
  v.pop_lo = v.pop_hi = 0;
  v.pop_done.clear();
  // A source's cached next document may lie in it: look it up again (kNeedView then).
  for (SourceState& S : src_) S.next_tick = ~uint64_t{0};
  return true;
}

void Core::add_unit(int32_t source, int32_t view, int64_t n_docs, int64_t doc_base) {
  if (view >= static_cast<int32_t>(views_.size())) views_.resize(static_cast<size_t>(view) + 1);
  src_.at(static_cast<size_t>(source)).units.push_back(Unit{view, n_docs, doc_base});
}

void Core::layout(int32_t s, int64_t streams, int64_t stream, std::vector<Range>& out, int64_t& n_local) const {
  // The same split as the loader's own layout (rsdb/loader.py, _stream_range): shard j
  // gives stream k its range number q = (k + j) mod streams of `streams` equal parts.
  out.clear();
  n_local = 0;
  const auto& units = src_[static_cast<size_t>(s)].units;
  for (size_t j = 0; j < units.size(); ++j) {
    const Unit& u = units[j];
    const int64_t q = static_cast<int64_t>((static_cast<uint64_t>(stream) + j) % static_cast<uint64_t>(streams));
    const int64_t b = static_cast<int64_t>(static_cast<__int128>(q) * u.n_docs / streams);
    const int64_t e = static_cast<int64_t>(static_cast<__int128>(q + 1) * u.n_docs / streams);
    if (e <= b) continue;
    out.push_back(Range{u.view, b, e, u.doc_base, n_local});
    n_local += e - b;
  }
}

int64_t Core::slice_docs(int32_t s, int64_t streams, int64_t stream) const {
  if (s < 0 || s >= cfg_.n_sources || streams < 1 || stream < 0 || stream >= streams) return -1;
  std::vector<Range> rs;
  int64_t n = 0;
  layout(s, streams, stream, rs, n);
  return n;
}

Status Core::locate(const std::vector<Range>& ranges, int64_t j, Next& d) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), j,
                             [](int64_t x, const Range& r) { return x < r.local_start; });
  --it;
  const int64_t doc = it->begin + (j - it->local_start);
  const View& v = views_[static_cast<size_t>(it->view)];
  if (!v.ready) {
    err_view_ = it->view;
    return kNeedView;
  }
  if (doc < 0 || doc >= v.n_docs) {
    err_view_ = it->view;
    err_doc_ = doc;
    err_value_ = v.n_docs;
    return kBadDoc;
  }
  const int64_t off = v.offsets[doc], end = v.offsets[doc + 1];
  if (off < 0 || end < off || end > v.n_tokens) {
    err_view_ = it->view;
    err_doc_ = doc;
    err_value_ = end < off ? off : end;
    return kBadDoc;
  }
  d.valid = true;
  d.view = it->view;
  d.doc = doc;
  d.start = d.off = off;
  d.end = end;
  d.gid = it->doc_base + doc;  // index within the source
  return kOk;
}

int64_t Core::piece_tokens(int32_t s, const Piece& p) {
  if (s < 0 || s >= cfg_.n_sources || p.streams < 1 || p.stream < 0 || p.stream >= p.streams) return 0;
  std::vector<Range> rs;
  int64_t n = 0;
  layout(s, p.streams, p.stream, rs, n);
  for (const Range& r : rs)
    if (!views_[static_cast<size_t>(r.view)].ready) return -1 - static_cast<int64_t>(r.view);
  int64_t total = 0;
  const int64_t end = std::min(p.end, n);
  if (p.begin <= 0 && end == n) {  // a whole epoch: two offsets per range
    for (const Range& r : rs) {
      const View& v = views_[static_cast<size_t>(r.view)];
      if (r.end <= v.n_docs) total += v.offsets[r.end] - v.offsets[r.begin];
    }
    return total;
  }
  uint64_t keys[4];
  epoch_keys(s, p.stream, p.epoch, keys);
  Blocks b;
  make_blocks(rs, keys, b);
  for (int64_t c = std::max<int64_t>(0, p.begin); c < end; ++c) {
    Next d;
    if (locate(rs, order_at(rs, n, keys, b, static_cast<uint64_t>(c)), d) == kOk)
      total += d.end - d.off;  // a corrupt document is reported when it is read
  }
  return total;
}

std::vector<int64_t> Core::piece_docs(int32_t s, const Piece& p) const {
  std::vector<Range> rs;
  int64_t n = 0;
  layout(s, p.streams, p.stream, rs, n);
  uint64_t keys[4];
  epoch_keys(s, p.stream, p.epoch, keys);
  Blocks b;
  make_blocks(rs, keys, b);
  std::vector<int64_t> out;
  for (int64_t c = std::max<int64_t>(0, p.begin); c < std::min(p.end, n); ++c) {
    const int64_t j = order_at(rs, n, keys, b, static_cast<uint64_t>(c));
    auto it = std::upper_bound(rs.begin(), rs.end(), j, [](int64_t x, const Range& r) { return x < r.local_start; });
    --it;
    out.push_back(it->doc_base + it->begin + (j - it->local_start));
  }
  return out;
}

void Core::reshape(int64_t batch_size, int64_t seq_len1) {
  cfg_.batch_size = std::max<int64_t>(1, batch_size);
  cfg_.seq_len1 = std::max<int64_t>(2, seq_len1);
  if (static_cast<int64_t>(iota_.size()) < cfg_.seq_len1) {
    const size_t old = iota_.size();
    iota_.resize(static_cast<size_t>(cfg_.seq_len1));
    for (size_t i = old; i < iota_.size(); ++i) iota_[i] = static_cast<int32_t>(i);
  }
}

bool Core::has_work(const SourceState& S) const {
  return S.n_local > 0 || S.partial_i < S.partial.size() || S.carry_i < S.carry.size();
}

uint64_t Core::next_rand() {
  rng_ += kGamma;
  return mix64(rng_);
}

uint64_t Core::peek_rand(uint64_t k) const { return mix64(rng_ + (k + 1) * kGamma); }

bool Core::all_exhausted() const {
  for (const auto& s : src_)
    if (!s.exhausted && has_work(s)) return false;
  return true;
}

void Core::switch_phase(int64_t phase) { phase_ = phase; }

Status Core::pick_source(int32_t& best) {
  // Mixing by weight, in tokens. A source's standing is what it emitted in this phase
  // plus the part of its pool tokens expected to be emitted before the phase ends: with
  // T tokens left in the phase and P tokens in the pool, a pool token is emitted within
  // T with probability about f = 1 - exp(-T / P) (the pool turns over once per P
  // emitted tokens); for long or endless phases f = 1 (emitted + pool). Each candidate
  // source's next document is looked up (its length is known from the offsets) and the
  // source whose document leaves the standings closest to the weights is chosen, so one
  // long document cannot overshoot a source's share. Closeness is Pearson's chi-square,
  // sum (x - w T)^2 / w: with plain squares a source of one short document (0.02% of the
  // tokens) won every pick its document fit, because a short overshoot costs little in
  // absolute tokens, and reached 280 epochs while the rest were at 5; divided by its
  // weight, a small source overshoots only as much as its share allows.
  best = -1;
  const int64_t ns = cfg_.n_sources;
  const double* w = &weights_[static_cast<size_t>(phase_ * ns)];
  const int64_t* em = &emitted_[static_cast<size_t>(phase_ * ns)];
  double pool = 0;
  for (int64_t s = 0; s < ns; ++s) pool += static_cast<double>(src_[static_cast<size_t>(s)].pool_remaining);
  double f = 1.0;
  if (phase_tokens_left_ >= 0 && pool > 0) {
    const double left = static_cast<double>(phase_tokens_left_ - pos_ - row_ * cfg_.seq_len1);
    f = left > 0 ? 1.0 - std::exp(-left / pool) : 0.0;
  }
  double x[kMaxMixSources];
  double total = 0;
  const int64_t nm = std::min<int64_t>(ns, kMaxMixSources);
  for (int64_t s = 0; s < nm; ++s) {
    x[s] = static_cast<double>(em[s]) + f * static_cast<double>(src_[static_cast<size_t>(s)].pool_remaining);
    if (w[s] > 0) total += x[s];
  }
  double best_cost = std::numeric_limits<double>::infinity();
  for (int64_t s = 0; s < ns; ++s) {
    SourceState& S = src_[static_cast<size_t>(s)];
    if (w[s] <= 0 || S.exhausted || !has_work(S)) continue;
    if (s >= nm) {  // beyond the least-squares table: plain largest deficit is enough
      if (best < 0) best = static_cast<int32_t>(s);
      continue;
    }
    Next d;
    const Status st = next_doc(static_cast<int32_t>(s), d);
    if (st != kOk) return st;
    if (!d.valid) continue;  // ran out (finite epochs)
    const double add = f * static_cast<double>(d.end - d.off);
    const double t2 = total + add;
    double cost = 0;
    for (int64_t t = 0; t < nm; ++t) {
      if (w[t] <= 0) continue;
      const double e = x[t] + (t == s ? add : 0.0) - w[t] * t2;
      cost += e * e / w[t];  // relative to the weight (see above)
    }
    if (cost < best_cost) {
      best_cost = cost;
      best = static_cast<int32_t>(s);
    }
  }
  return kOk;
}

Status Core::next_doc(int32_t s, Next& d) {
  // Locate source s's next document: carried partly read documents first, then carried
  // pieces, then the stream's own epochs (starting a new one if the stream is through).
  SourceState& S = src_[static_cast<size_t>(s)];
  d.valid = false;
  if (S.next_tick == S.tick) {
    d = S.next;
    return kOk;
  }
  if (S.partial_i < S.partial.size()) {
    const Partial& p = S.partial[S.partial_i];
    const View& v = views_[static_cast<size_t>(p.view)];
    if (!v.ready) {
      err_view_ = p.view;
      return kNeedView;
    }
    d.valid = true;  // offsets and head checked by set_state
    d.view = p.view;
    d.doc = p.doc;
    d.start = v.offsets[p.doc];
    d.off = d.start + p.head;
    d.end = v.offsets[p.doc + 1];
    d.gid = p.gid;
  } else if (S.carry_i < S.carry.size()) {
    if (S.c_for != S.carry_i) {
      const Piece& p = S.carry[S.carry_i];
      layout(s, p.streams, p.stream, S.c_ranges, S.c_n_local);
      epoch_keys(s, p.stream, p.epoch, S.c_keys);
      make_blocks(S.c_ranges, S.c_keys, S.c_blocks);
      S.c_for = S.carry_i;
    }
    const int64_t j = order_at(S.c_ranges, S.c_n_local, S.c_keys, S.c_blocks, static_cast<uint64_t>(S.carry_pos));
    const Status st = locate(S.c_ranges, j, d);
    if (st != kOk) return st;
  } else {
    if (cfg_.epochs > 0 && S.epoch >= static_cast<uint64_t>(cfg_.epochs)) {
      S.exhausted = true;  // restored with all remaining epochs carried
      return kOk;
    }
    if (S.cursor >= static_cast<uint64_t>(S.n_local)) {
      if (S.epoch_tokens == 0) {
        err_source_ = s;
        if (cfg_.epochs == 0) return kEmptySource;
        S.exhausted = true;
        return kOk;
      }
      if (cfg_.epochs > 0 && S.epoch + 1 >= static_cast<uint64_t>(cfg_.epochs)) {
        S.exhausted = true;
        return kOk;
      }
      S.epoch += 1;
      S.cursor = 0;
      S.epoch_tokens = 0;
      start_epoch(S, s);
    }
    ensure_blocks(S);
    const int64_t j = order_at(S.ranges, S.n_local, S.keys, S.blocks, S.cursor);
    const Status st = locate(S.ranges, j, d);
    if (st != kOk) return st;
  }
  S.next = d;
  S.next_tick = S.tick;
  return kOk;
}

Status Core::admit(int32_t s, int64_t k) {
  SourceState& S = src_[static_cast<size_t>(s)];
  Next d;
  const Status st = next_doc(s, d);
  if (st != kOk || !d.valid) return st;
  bool own = false;
  if (S.partial_i < S.partial.size()) {
    ++S.partial_i;
  } else if (S.carry_i < S.carry.size()) {
    if (++S.carry_pos >= S.carry[S.carry_i].end && ++S.carry_i < S.carry.size()) S.carry_pos = S.carry[S.carry_i].begin;
  } else {
    S.cursor += 1;
    own = true;
  }
  ++S.tick;
  if (own && cfg_.prefetch && S.cursor < static_cast<uint64_t>(S.n_local)) {
    // The stream's next document is known: fetch its offsets entry now, so the lookup
    // when this source is next chosen does not wait on a cache miss.
    ensure_blocks(S);
    const int64_t j = order_at(S.ranges, S.n_local, S.keys, S.blocks, S.cursor);
    auto it = std::upper_bound(S.ranges.begin(), S.ranges.end(), j,
                               [](int64_t x, const Range& r) { return x < r.local_start; });
    --it;
    const View& nv = views_[static_cast<size_t>(it->view)];
    const int64_t nd = it->begin + (j - it->local_start);
    if (nv.ready && nd >= 0 && nd < nv.n_docs) __builtin_prefetch(nv.offsets + nd);
  }
  const int64_t len = d.end - d.off;
  if (len == 0) return kOk;
  if (cfg_.populate_window > 0 && populate_ok_) {
    View& v = views_[static_cast<size_t>(d.view)];
    if (!v.pop_done.empty()) populate_doc(v, d.off, d.end);
  }
  p_live_[k] = 1;
  ++n_live_;
  p_cur_[k] = d.off;
  p_end_[k] = d.end;
  p_view_[k] = d.view;
  p_src_[k] = s;
  p_start_[k] = d.start;
  p_doc_[k] = d.doc;
  p_gid_[k] = d.gid;
  S.pool_remaining += len;
  if (own) S.epoch_tokens += len;
  return kOk;
}

Status Core::refill() {
  // Fill every hole, lowest slot first (a deterministic order a restored state repeats).
  refilling_ = true;
  const int64_t cap = cfg_.buffer_docs;
  for (int64_t i = 0; i < cap && n_live_ < cap; ++i) {
    while (!p_live_[i]) {
      int32_t s = -1;
      const Status ps = pick_source(s);
      if (ps != kOk) return ps;
      if (s < 0) {
        refilling_ = false;
        return kOk;
      }
      const Status st = admit(s, i);
      if (st != kOk) return st;
    }
  }
  refilling_ = false;
  return kOk;
}

void Core::remove_slot(int64_t r) {
  p_live_[r] = 0;
  --n_live_;
  if (cfg_.buffer_docs - n_live_ >= cfg_.refill_batch) refilling_ = true;
}

int64_t Core::pick() {
  const int64_t cap = cfg_.buffer_docs;
  if (n_live_ * 4 >= cap) {
    // Dense pool (the normal case: at most refill_batch holes): rejection sampling.
    for (;;) {
      const int64_t r = bounded(next_rand(), cap);
      if (p_live_[r]) return r;
    }
  }
  // Sparse pool (sources running dry): the k-th live slot.
  int64_t k = bounded(next_rand(), n_live_);
  for (int64_t i = 0; i < cap; ++i)
    if (p_live_[i] && k-- == 0) return i;
  return -1;  // unreachable while n_live_ > 0
}

int64_t Core::predict(uint64_t& draw) const {
  // The slot a future pick() will return if no slot changes before then; `draw` is the
  // index of the next unused future draw and is advanced past the ones consumed.
  const int64_t cap = cfg_.buffer_docs;
  for (int tries = 0; tries < 4; ++tries) {
    const int64_t r = bounded(peek_rand(draw++), cap);
    if (p_live_[r]) return r;
  }
  return -1;
}

// The largest id of a chunk against the view's vocabulary bound; records where a bad one is.
Status Core::check_bound(int64_t r, uint32_t max_id, uint64_t bound) {
  if (static_cast<uint64_t>(max_id) < bound) return kOk;
  err_view_ = p_view_[r];
  err_doc_ = p_doc_[r];
  err_value_ = static_cast<int64_t>(max_id);
  return kBadToken;
}

Status Core::copy_meta(int64_t r, int64_t n, const Outputs& o, int64_t at) {
  const View& v = views_[static_cast<size_t>(p_view_[r])];
  const int64_t cur = p_cur_[r];
  const int32_t n32 = static_cast<int32_t>(n);
  const int16_t s = static_cast<int16_t>(p_src_[r]);
  int32_t* tok = o.tokens + at;
  int32_t* pos = o.position_ids + at;
  int16_t* sid = o.source_ids + at;
  bool* mask = o.loss_mask + at;
  uint32_t m;
  if (v.dtype == kU16) {
    const uint16_t* src = static_cast<const uint16_t*>(v.tokens) + cur;
    m = o.doc_ids_64 ? copy_meta_u16_d64(src, tok, pos, static_cast<int64_t*>(o.doc_ids) + at, sid, mask, n32, p_gid_[r], s)
                     : copy_meta_u16_d32(src, tok, pos, static_cast<int32_t*>(o.doc_ids) + at, sid, mask, n32,
                                         static_cast<int32_t>(p_gid_[r]), s);
  } else {
    // 32-bit tokens: check, then block copies and block stores (see copy_bytes)
    const uint32_t* src = static_cast<const uint32_t*>(v.tokens) + cur;
    m = max_u32(src, n);
    if (static_cast<uint64_t>(m) < v.bound) {
      const size_t k = static_cast<size_t>(n);
      copy_bytes(tok, src, k * 4);
      copy_bytes(pos, iota_.data(), k * 4);
      if (o.doc_ids_64)
        store_u64(static_cast<int64_t*>(o.doc_ids) + at, static_cast<uint64_t>(p_gid_[r]), k);
      else
        store_u32(static_cast<int32_t*>(o.doc_ids) + at, static_cast<uint32_t>(p_gid_[r]), k);
      store_u16(sid, static_cast<uint16_t>(s), k);
      store_u8(mask, 1, k);
    }
  }
  return check_bound(r, m, v.bound);
}

Status Core::copy_chunk(int64_t r, int64_t n, int32_t* dst) {
  const View& v = views_[static_cast<size_t>(p_view_[r])];
  const int64_t cur = p_cur_[r];
  uint32_t m;
  if (v.dtype == kU16) {
    m = copy_u16(static_cast<const uint16_t*>(v.tokens) + cur, dst, n);
  } else {
    m = copy_u32(static_cast<const uint32_t*>(v.tokens) + cur, dst, n);
  }
  return check_bound(r, m, v.bound);
}

void Core::fill_doc_ids(const Outputs& o, int64_t at, int64_t n, int64_t v) const {
  if (o.doc_ids_64)
    fill_i64(static_cast<int64_t*>(o.doc_ids) + at, n, v);
  else
    fill_i32(static_cast<int32_t*>(o.doc_ids) + at, n, static_cast<int32_t>(v));
}

Status Core::fill(const Outputs& o, int64_t phase, int64_t phase_tokens_left) {
  if (phase != phase_) switch_phase(phase);
  phase_tokens_left_ = phase_tokens_left;
  const int64_t L1 = cfg_.seq_len1;
  const int64_t max_chunk = cfg_.max_chunk > 0 ? cfg_.max_chunk : L1;
  const int64_t ns = cfg_.n_sources;
  int64_t* emitted = &emitted_[static_cast<size_t>(phase_ * ns)];
  const bool all_meta = o.position_ids && o.doc_ids && o.source_ids && o.loss_mask;
  // cu_seqlens rows are written at stride L1 + 1 while filling and compacted to the
  // batch's width at the end; a row's boundaries after its segment starts are implied.
  for (; row_ < cfg_.batch_size; ++row_, pos_ = 0, nseg_ = 0) {
    const int64_t base = row_ * L1;
    int32_t* tok = o.tokens + base;
    int32_t* cu = o.cu_seqlens ? o.cu_seqlens + row_ * (L1 + 1) : nullptr;
    int32_t padded = 0;
    while (pos_ < L1) {
      if (refilling_ || n_live_ == 0) {
        const Status st = refill();
        if (st != kOk) return st;
        if (n_live_ == 0) {
          // Every source is exhausted (finite epochs): pad and mask the rest of the row.
          const int64_t n = L1 - pos_;
          std::memset(tok + pos_, 0, static_cast<size_t>(n) * sizeof(int32_t));
          if (o.position_ids) std::memset(o.position_ids + base + pos_, 0, static_cast<size_t>(n) * sizeof(int32_t));
          if (o.doc_ids) fill_doc_ids(o, base + pos_, n, -1);
          if (o.source_ids) fill_i16(o.source_ids + base + pos_, n, -1);
          if (o.loss_mask) std::memset(o.loss_mask + base + pos_, 0, static_cast<size_t>(n));
          if (cu) cu[nseg_] = static_cast<int32_t>(pos_);  // the padding is one more segment
          padded = 1;
          pos_ = L1;
          break;
        }
      }
      const int64_t r = pick();
      if (cfg_.prefetch && n_live_ * 4 >= cfg_.buffer_docs) {
        // The next picks are known already (counter-based RNG, stable slot indices):
        // start fetching their read heads while this chunk is copied, so several
        // random reads are in flight at once instead of one.
        uint64_t draw = 0;
        for (uint64_t k = 0; k < kPrefetchPicks; ++k) {
          const int64_t g = predict(draw);
          if (g < 0) break;
          const View& gv = views_[static_cast<size_t>(p_view_[g])];
          const char* p = token_ptr(gv, p_cur_[g]);
          const int64_t bytes = (p_end_[g] - p_cur_[g]) * (gv.dtype == kU16 ? 2 : 4);
          const int64_t lines = std::min<int64_t>(kPrefetchLines, (bytes + 63) / 64);
          for (int64_t l = 0; l < lines; ++l) __builtin_prefetch(p + 64 * l);
        }
      }
      const int64_t n = std::min(std::min(max_chunk, p_end_[r] - p_cur_[r]), L1 - pos_);
      const int32_t s = p_src_[r];
      const int64_t at = base + pos_;
      if (all_meta) {
        // the default batch: tokens and the four per-token arrays in one pass
        const Status st = copy_meta(r, n, o, at);
        if (st != kOk) return st;
      } else {
        const Status st = copy_chunk(r, n, tok + pos_);
        if (st != kOk) return st;
        if (o.position_ids) fill_iota(o.position_ids + at, static_cast<int32_t>(n));
        if (o.doc_ids) fill_doc_ids(o, at, n, p_gid_[r]);
        if (o.source_ids) fill_i16(o.source_ids + at, n, static_cast<int16_t>(s));
        if (o.loss_mask) std::memset(o.loss_mask + at, 1, static_cast<size_t>(n));
      }
      if (cu) cu[nseg_] = static_cast<int32_t>(pos_);
      pos_ += n;
      ++nseg_;
      p_cur_[r] += n;
      emitted[s] += n;
      src_[static_cast<size_t>(s)].pool_remaining -= n;
      if (p_cur_[r] == p_end_[r]) remove_slot(r);
    }
    if (o.n_segments) o.n_segments[row_] = static_cast<int32_t>(nseg_);
    if (cu) cu[L1] = static_cast<int32_t>(nseg_) + padded;  // scratch: entries of this row
  }
  if (o.cu_seqlens) {
    // Compact rows from stride L1 + 1 to the widest row's segments + 1, padding each
    // row with L1. Row r moves to offset r * W <= r * (L1 + 1), in increasing row
    // order, so no row is overwritten before it has moved.
    int64_t W = 0;
    for (int64_t r = 0; r < cfg_.batch_size; ++r)
      W = std::max<int64_t>(W, o.cu_seqlens[r * (L1 + 1) + L1] + 1);
    for (int64_t r = 0; r < cfg_.batch_size; ++r) {
      const int32_t* from = o.cu_seqlens + r * (L1 + 1);
      const int64_t k = from[L1];
      int32_t* to = o.cu_seqlens + r * W;
      if (to != from) std::memmove(to, from, static_cast<size_t>(k) * sizeof(int32_t));
      for (int64_t j = k; j < W; ++j) to[j] = static_cast<int32_t>(L1);
    }
    cu_width_ = W;
  }
  row_ = 0;
  pos_ = 0;
  nseg_ = 0;
  ++batches_;
  return kOk;
}

State Core::get_state() const {
  State st;
  st.rng = rng_;
  st.phase = phase_;
  st.batches = batches_;
  st.refilling = refilling_;
  for (int64_t k = 0; k < cfg_.buffer_docs; ++k) {
    if (!p_live_[k]) continue;
    st.slot_index.push_back(k);
    st.slot_source.push_back(p_src_[k]);
    st.slot_view.push_back(p_view_[k]);
    st.slot_doc.push_back(p_doc_[k]);
    st.slot_head.push_back(p_cur_[k] - p_start_[k]);
  }
  for (const auto& s : src_) {
    st.epoch.push_back(s.epoch);
    st.cursor.push_back(s.cursor);
    st.exhausted.push_back(s.exhausted ? 1 : 0);
    st.epoch_tokens.push_back(s.epoch_tokens);
    st.partial_count.push_back(static_cast<int64_t>(s.partial.size() - s.partial_i));
    for (size_t i = s.partial_i; i < s.partial.size(); ++i) {
      st.partial_view.push_back(s.partial[i].view);
      st.partial_doc.push_back(s.partial[i].doc);
      st.partial_head.push_back(s.partial[i].head);
    }
    int64_t pieces = 0;
    for (size_t i = s.carry_i; i < s.carry.size(); ++i) {
      const Piece& p = s.carry[i];
      const int64_t begin = i == s.carry_i ? s.carry_pos : p.begin;
      if (begin >= p.end) continue;
      st.carry_streams.push_back(p.streams);
      st.carry_stream.push_back(p.stream);
      st.carry_epoch.push_back(p.epoch);
      st.carry_begin.push_back(begin);
      st.carry_end.push_back(p.end);
      ++pieces;
    }
    st.carry_count.push_back(pieces);
    st.own_n_local.push_back(s.n_local);
  }
  st.emitted = emitted_;
  return st;
}

std::string Core::set_state(const State& st) {
  const size_t ns = static_cast<size_t>(cfg_.n_sources);
  if (st.version != kStateVersion) return "state version " + std::to_string(st.version) + " != " + std::to_string(kStateVersion);
  if (st.epoch.size() != ns || st.cursor.size() != ns || st.exhausted.size() != ns || st.epoch_tokens.size() != ns)
    return "per-source arrays do not match the number of sources";
  if (st.emitted.size() != emitted_.size()) return "per-phase counters do not match the number of phases";
  const size_t n = st.slot_source.size();
  if (n > static_cast<size_t>(cfg_.buffer_docs)) return "more pool slots than buffer_docs";
  if (st.slot_view.size() != n || st.slot_doc.size() != n || st.slot_head.size() != n || st.slot_index.size() != n)
    return "pool arrays differ in length";
  std::vector<uint8_t> seen(static_cast<size_t>(cfg_.buffer_docs), 0);
  for (size_t k = 0; k < n; ++k) {
    const int64_t i = st.slot_index[k];
    if (i < 0 || i >= cfg_.buffer_docs || seen[static_cast<size_t>(i)]) return "slot index out of range or repeated";
    seen[static_cast<size_t>(i)] = 1;
  }
  if (st.phase < -1 || st.phase >= cfg_.n_phases) return "phase out of range";
  for (size_t s = 0; s < ns; ++s)
    if (st.cursor[s] > static_cast<uint64_t>(src_[s].n_local)) return "cursor beyond the source's documents";
  // carried work
  if (st.partial_count.size() != ns || st.carry_count.size() != ns) return "carried-work counts do not match the number of sources";
  int64_t np = 0, nc = 0;
  for (size_t s = 0; s < ns; ++s) {
    if (st.partial_count[s] < 0 || st.carry_count[s] < 0) return "negative carried-work count";
    np += st.partial_count[s];
    nc += st.carry_count[s];
  }
  if (st.partial_view.size() != static_cast<size_t>(np) || st.partial_doc.size() != static_cast<size_t>(np) ||
      st.partial_head.size() != static_cast<size_t>(np))
    return "carried partly read documents: arrays differ in length";
  if (st.carry_streams.size() != static_cast<size_t>(nc) || st.carry_stream.size() != static_cast<size_t>(nc) ||
      st.carry_epoch.size() != static_cast<size_t>(nc) || st.carry_begin.size() != static_cast<size_t>(nc) ||
      st.carry_end.size() != static_cast<size_t>(nc))
    return "carried pieces: arrays differ in length";
  std::vector<std::vector<Partial>> partials(ns);
  std::vector<std::vector<Piece>> carries(ns);
  {
    size_t i = 0, c = 0;
    for (size_t s = 0; s < ns; ++s) {
      for (int64_t k = 0; k < st.partial_count[s]; ++k, ++i) {
        const int32_t vi = st.partial_view[i];
        int64_t base = -1;
        for (const Unit& u : src_[s].units)
          if (u.view == vi) base = u.doc_base;
        if (base < 0) return "carried document in shard " + std::to_string(vi) + ", which is not a shard of source " + std::to_string(s);
        if (!views_[static_cast<size_t>(vi)].ready) return "carried document's shard " + std::to_string(vi) + " not registered";
        const View& v = views_[static_cast<size_t>(vi)];
        const int64_t d = st.partial_doc[i], h = st.partial_head[i];
        if (d < 0 || d >= v.n_docs) return "carried document out of range";
        const int64_t off = v.offsets[d], end = v.offsets[d + 1];
        if (off < 0 || end < off || end > v.n_tokens) return "carried document has invalid offsets";
        if (h < 0 || off + h >= end) return "carried read head out of range";
        partials[s].push_back(Partial{vi, d, h, base + d});
      }
      for (int64_t k = 0; k < st.carry_count[s]; ++k, ++c) {
        const Piece p{st.carry_streams[c], st.carry_stream[c], st.carry_epoch[c], st.carry_begin[c], st.carry_end[c]};
        if (p.streams < 1 || p.stream < 0 || p.stream >= p.streams) return "carried piece names a stream out of range";
        if (p.begin < 0 || p.end <= p.begin || p.end > slice_docs(static_cast<int32_t>(s), p.streams, p.stream))
          return "carried piece [" + std::to_string(p.begin) + ", " + std::to_string(p.end) + ") of stream " +
                 std::to_string(p.stream) + "/" + std::to_string(p.streams) + " lies outside that stream's documents";
        carries[s].push_back(p);
      }
    }
  }
  std::vector<int64_t> remaining(ns, 0);
  for (size_t k = 0; k < n; ++k) {
    const int32_t s = st.slot_source[k], vi = st.slot_view[k];
    if (s < 0 || static_cast<size_t>(s) >= ns) return "slot source out of range";
    if (vi < 0 || static_cast<size_t>(vi) >= views_.size() || !views_[static_cast<size_t>(vi)].ready)
      return "slot view " + std::to_string(vi) + " not registered";
    const View& v = views_[static_cast<size_t>(vi)];
    const int64_t d = st.slot_doc[k];
    if (d < 0 || d >= v.n_docs) return "slot document out of range";
    const int64_t off = v.offsets[d], end = v.offsets[d + 1];
    if (off < 0 || end < off || end > v.n_tokens) return "slot document has invalid offsets";
    if (st.slot_head[k] < 0 || off + st.slot_head[k] >= end) return "slot read head out of range";
    remaining[static_cast<size_t>(s)] += end - off - st.slot_head[k];
  }
  // Everything checked: apply.
  rng_ = st.rng;
  phase_ = st.phase;
  batches_ = st.batches;
  n_live_ = static_cast<int64_t>(n);
  std::fill(p_live_.begin(), p_live_.end(), 0);
  for (size_t j = 0; j < n; ++j) {
    const int64_t k = st.slot_index[j];
    const int32_t s = st.slot_source[j], vi = st.slot_view[j];
    const View& v = views_[static_cast<size_t>(vi)];
    const int64_t d = st.slot_doc[j];
    p_live_[k] = 1;
    p_src_[k] = s;
    p_view_[k] = vi;
    p_doc_[k] = d;
    p_start_[k] = v.offsets[d];
    p_cur_[k] = v.offsets[d] + st.slot_head[j];
    p_end_[k] = v.offsets[d + 1];
    // Recover the global doc id from the source's ranges.
    int64_t base = 0;
    for (const Range& rg : src_[static_cast<size_t>(s)].ranges)
      if (rg.view == vi) base = rg.doc_base;
    p_gid_[k] = base + d;
  }
  bool carried = false;
  for (size_t s = 0; s < ns; ++s) {
    SourceState& S = src_[s];
    S.epoch = st.epoch[s];
    S.cursor = st.cursor[s];
    S.exhausted = st.exhausted[s] != 0;
    S.epoch_tokens = st.epoch_tokens[s];
    S.next_tick = ~uint64_t{0};
    S.pool_remaining = remaining[s];
    S.partial = std::move(partials[s]);
    S.partial_i = 0;
    S.carry = std::move(carries[s]);
    S.carry_i = 0;
    S.carry_pos = S.carry.empty() ? 0 : S.carry.front().begin;
    S.c_for = ~size_t{0};
    start_epoch(S, static_cast<int32_t>(s));
    carried = carried || !S.partial.empty() || !S.carry.empty();
  }
  if (carried != pop_whole_) {
    pop_whole_ = carried;
    for (View& v : views_) init_pop(v);
  }
  emitted_ = st.emitted;
  refilling_ = st.refilling;
  row_ = pos_ = nseg_ = 0;
  return "";
}

}  // namespace rsdb
