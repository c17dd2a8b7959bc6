// RSDB core: plain C++17, no Python or nanobind includes (bindings.cpp holds the glue).
//
// The Random Sequential Document Buffer keeps a pool of open documents, each with a
// read head. A sequence is filled by picking a pool slot uniformly at random and
// copying the next chunk of that document (at most max_chunk tokens, at most what is
// left of the document and of the sequence). Finished documents leave the pool; once
// enough slots are free the pool is refilled in one go from the sources' shuffled
// document streams, choosing the source of every new document by largest deficit
// against the current phase's weights.
//
// All randomness comes from splitmix64 counters and a Feistel permutation, so the
// whole state is a few integers per source plus (source, view, doc, head) per slot.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rsdb {

// Bumped whenever the state layout changes.
constexpr int kStateVersion = 4;

int core_version();

enum Status : int {
  kOk = 0,          // batch complete
  kNeedView = 1,    // error_view() must be registered (set_view) before calling fill again
  kBadDoc = 2,      // a document's offsets are out of range (error_* says which)
  kBadToken = 3,    // a token id is >= the view's bound
  kEmptySource = 4, // a weighted source has no tokens in this stream
};

// One memory-mapped shard: offsets (n_docs + 1 int64) and tokens (n_tokens of dtype).
enum DType : int { kU32 = 0, kI32 = 1, kU16 = 2 };

struct View {
  const int64_t* offsets = nullptr;
  int64_t n_docs = 0;
  const void* tokens = nullptr;
  int64_t n_tokens = 0;
  int dtype = kU32;
  uint64_t bound = 0;  // token ids (as unsigned) must be < bound
  bool ready = false;
  // Page-table population (Config::populate_window): this stream's token range in the
  // view, and which windows of it have been populated.
  int64_t pop_lo = 0, pop_hi = 0;
  std::vector<uint64_t> pop_done;
  int64_t range_begin = 0, range_end = 0;  // this stream's documents of the view (add_range)
};

// Docs [begin, end) of `view` belong to this stream; doc_base is the global index of
// the view's document 0 within its source (for doc ids).
struct Range {
  int32_t view;
  int64_t begin, end;
  int64_t doc_base;
  int64_t local_start;  // index of `begin` in the stream's local numbering
};

struct NextDoc {
  bool valid = false;
  int32_t view = -1;
  // off: where reading starts (the document's start plus a carried read head)
  int64_t doc = 0, start = 0, off = 0, end = 0, gid = 0;
};

// One shard file of a source, in the source's order (its index there is `j` in the
// stream layout), whether or not this stream has documents in it: with these the core
// can lay out any stream of any number of streams (carried pieces, below).
struct Unit {
  int32_t view;
  int64_t n_docs;
  int64_t doc_base;
};

// Carried work after an elastic restore (rsdb/state.py): positions [begin, end) of
// epoch `epoch` of stream `stream` out of `streams` streams, i.e. the documents
// permute(begin), ..., permute(end - 1) of that stream's slice of the source.
struct Piece {
  int64_t streams, stream;
  uint64_t epoch;
  int64_t begin, end;
};

// A partly read document carried over from another stream's pool.
struct Partial {
  int32_t view;
  int64_t doc, head;
  int64_t gid;  // derived: index within the source
};

// A stream's visiting order of one epoch when shards are shuffled in blocks
// (Config::block_shards > 0): its ranges (one per shard) in a seeded order, `order[p]`
// being the p-th range, and `start[p]` the epoch position where that range's documents
// begin (start has one more entry, n_local). Consecutive groups of block_shards ranges
// form a block whose documents are visited in a permutation of their own. Empty with
// block_shards 0 (one permutation over the whole slice).
struct Blocks {
  std::vector<int32_t> order;
  std::vector<int64_t> start;
};

struct SourceState {
  std::vector<Range> ranges;
  Blocks blocks;  // of the current epoch (derived from keys and ranges)
  bool blocks_stale = true;
  std::vector<Unit> units;
  // cache of the stream's next document (derived, not part of the state); valid while
  // next_tick == tick (tick moves on every admit and epoch start)
  NextDoc next;
  uint64_t tick = 0, next_tick = ~uint64_t{0};
  int64_t n_local = 0;
  // Carried work, consumed before the stream's own epochs: partly read documents
  // first, then the pieces in order.
  std::vector<Partial> partial;
  size_t partial_i = 0;
  std::vector<Piece> carry;
  size_t carry_i = 0;
  int64_t carry_pos = 0;
  // layout of carry[c_for] (derived)
  std::vector<Range> c_ranges;
  int64_t c_n_local = 0;
  uint64_t c_keys[4] = {0, 0, 0, 0};
  Blocks c_blocks;
  size_t c_for = ~size_t{0};
  // stream position
  uint64_t epoch = 0;
  uint64_t cursor = 0;
  bool exhausted = false;
  int64_t epoch_tokens = 0;  // tokens admitted in the current epoch
  // accounting
  int64_t pool_remaining = 0;  // tokens of this source still in the pool
  uint64_t keys[4] = {0, 0, 0, 0};
};

struct Outputs {
  int32_t* tokens = nullptr;        // (B, L1), required
  int32_t* position_ids = nullptr;  // (B, L1) or null
  void* doc_ids = nullptr;          // (B, L1) int32, or int64 when doc_ids_64; or null
  bool doc_ids_64 = false;
  int16_t* source_ids = nullptr;    // (B, L1) or null
  bool* loss_mask = nullptr;        // (B, L1) or null
  // Room for B * (L1 + 1) entries, or null. Rows are written at stride L1 + 1 (entry L1
  // of a row is scratch); on kOk the first B * cu_width() entries hold a contiguous
  // (B, cu_width()) array: each row's segment starts, then L1, repeated up to the
  // batch's widest row.
  int32_t* cu_seqlens = nullptr;
  int32_t* n_segments = nullptr;    // (B,) or null: segments per row
};

struct Config {
  int64_t seq_len1 = 8193;  // tokens per row (seq_len + 1)
  int64_t batch_size = 8;
  int64_t buffer_docs = 1024;
  int64_t max_chunk = 0;  // <= 0: unlimited
  int64_t refill_batch = 64;
  uint64_t seed = 0;
  int64_t stream_index = 0;
  int64_t num_streams = 1;
  int64_t epochs = 0;  // 0: endless
  int64_t n_sources = 1;
  int64_t n_phases = 1;
  bool prefetch = true;
  // > 0: when a document enters the pool, map the aligned window of this many bytes
  // around it (clipped to the stream's range of the shard) into the page table in one
  // call, once per window, instead of one page fault per page as the copies first touch
  // them; only windows already wholly in the page cache (others keep page faults, so a
  // corpus larger than memory is not read a window per document). 0: page faults only.
  int64_t populate_window = 0;
  // > 0: visit each epoch of a source's slice in blocks of this many shards (the shards
  // in a seeded order, the documents of a block in a permutation of their own), so a
  // stream needs only the shards of its current block and whatever the pool still reads
  // (object storage with a bounded cache: the rest can be released). 0: one
  // permutation over the whole slice, every shard in use all epoch long.
  int64_t block_shards = 0;
};

// The serialisable state (between batches).
struct State {
  int version = kStateVersion;
  uint64_t rng = 0;
  int64_t phase = -1;
  int64_t batches = 0;
  bool refilling = false;
  // live pool slots: their slot index, source, view, doc and read head
  std::vector<int64_t> slot_index;
  std::vector<int32_t> slot_source;
  std::vector<int32_t> slot_view;
  std::vector<int64_t> slot_doc;   // doc index within the view
  std::vector<int64_t> slot_head;  // tokens already emitted from the doc
  // per source
  std::vector<uint64_t> epoch, cursor;
  std::vector<int64_t> exhausted, epoch_tokens;
  // per phase x source
  std::vector<int64_t> emitted;
  // carried work per source (counts, then the flattened entries in source order)
  std::vector<int64_t> partial_count, partial_doc, partial_head;
  std::vector<int32_t> partial_view;
  std::vector<int64_t> carry_count, carry_streams, carry_stream, carry_begin, carry_end;
  std::vector<uint64_t> carry_epoch;
  // export only (ignored by set_state): documents in this stream's own slice per source
  std::vector<int64_t> own_n_local;
};

class Core {
 public:
  explicit Core(const Config& cfg);

  // Setup (before the first fill).
  void add_range(int32_t source, int32_t view, int64_t begin, int64_t end, int64_t doc_base);
  // Every shard of a source in order (empty ones too), for laying out carried pieces.
  void add_unit(int32_t source, int32_t view, int64_t n_docs, int64_t doc_base);
  // Tokens of piece [begin, end) of (streams, stream, epoch) of `source`: >= 0, or
  // -1 - view when a view must be registered first. Reads two offsets per document.
  int64_t piece_tokens(int32_t source, const Piece& p);
  // The documents (indices within the source) of a piece, in reading order; no offsets.
  std::vector<int64_t> piece_docs(int32_t source, const Piece& p) const;
  // Documents of stream `stream` of `streams` in `source` (from the units; no offsets).
  int64_t slice_docs(int32_t source, int64_t streams, int64_t stream) const;
  // Change rows per batch and tokens per row between batches (scheduled batch size).
  void reshape(int64_t batch_size, int64_t seq_len1);
  void set_view(int32_t view, const int64_t* offsets, int64_t n_docs, const void* tokens,
                int64_t n_tokens, int dtype, uint64_t bound);
  // weights: n_phases x n_sources, row-major; normalised per phase here.
  void set_weights(const std::vector<double>& weights);

  // Fill one batch; resumable after kNeedView (call again with the same outputs).
  // phase_tokens_left: tokens this stream still emits in `phase` from the start of this
  // batch (< 0: the phase has no end), used to weigh the pool's content in the mixer.
  Status fill(const Outputs& out, int64_t phase, int64_t phase_tokens_left = -1);

  // Shards of `source` in the order this stream first reads them in `epoch`: pairs
  // (epoch position, view), flattened. Exact for blocks; with block_shards 0 the
  // permutation is walked for at most `walk` positions, the rest follow in shard order.
  std::vector<int64_t> first_use(int32_t source, uint64_t epoch, int64_t walk) const;
  // Views the core may read before the next release check: those of live pool slots,
  // carried work, and each source's current block (every shard of the slice when
  // block_shards is 0). Any other registered view may be released.
  std::vector<int32_t> views_in_use();
  // Forget a view's pointers (the caller then unmaps it): false, and nothing changes,
  // if a live slot still reads it. A later need of the view is kNeedView again.
  bool release_view(int32_t view);
  bool view_ready(int32_t view) const {
    return view >= 0 && view < static_cast<int32_t>(views_.size()) && views_[static_cast<size_t>(view)].ready;
  }

  State get_state() const;
  // Returns an empty string on success, else what is inconsistent.
  std::string set_state(const State& st);

  // Error details of the last non-ok status.
  int32_t error_view() const { return err_view_; }
  int64_t error_doc() const { return err_doc_; }
  int64_t error_value() const { return err_value_; }
  int32_t error_source() const { return err_source_; }

  // Introspection for stats and tests.
  int64_t n_active() const { return n_live_; }
  int64_t n_local(int32_t s) const { return src_[s].n_local; }
  const std::vector<int64_t>& emitted() const { return emitted_; }
  const std::vector<SourceState>& sources() const { return src_; }
  bool all_exhausted() const;
  int64_t batches() const { return batches_; }
  // Columns of the cu_seqlens array written by the last complete fill().
  int64_t cu_width() const { return cu_width_; }

 private:
  Status refill();
  using Next = NextDoc;
  void layout(int32_t s, int64_t streams, int64_t stream, std::vector<Range>& out, int64_t& n_local) const;
  void epoch_keys(int32_t s, int64_t stream, uint64_t epoch, uint64_t keys[4]) const;
  void make_blocks(const std::vector<Range>& ranges, const uint64_t keys[4], Blocks& b) const;
  // Local index (into `ranges`' numbering) of the document at epoch position c.
  int64_t order_at(const std::vector<Range>& ranges, int64_t n_local, const uint64_t keys[4], const Blocks& b,
                   uint64_t c) const;
  // [first, last) range positions (into b.order) of the block holding epoch position c.
  void block_of(const Blocks& b, uint64_t c, int64_t& first, int64_t& last) const;
  void ensure_blocks(SourceState& S);
  Status locate(const std::vector<Range>& ranges, int64_t j, Next& d);
  bool has_work(const SourceState& S) const;
  // Admit the next document of source s into `slot`: kOk (admitted, skipped an empty
  // doc, or the source ran out), or an error/kNeedView.
  Status admit(int32_t s, int64_t slot);
  Status next_doc(int32_t s, Next& d);
  Status pick_source(int32_t& best);
  void start_epoch(SourceState& s, int32_t idx);
  void switch_phase(int64_t phase);
  void remove_slot(int64_t r);
  int64_t pick();
  int64_t predict(uint64_t& draw) const;
  uint64_t next_rand();
  uint64_t peek_rand(uint64_t k) const;
  Status check_bound(int64_t r, uint32_t max_id, uint64_t bound);
  Status copy_chunk(int64_t r, int64_t n, int32_t* dst);
  void populate_doc(View& v, int64_t off, int64_t end);
  void init_pop(View& v);
  Status copy_meta(int64_t r, int64_t n, const Outputs& o, int64_t at);
  void fill_doc_ids(const Outputs& o, int64_t at, int64_t n, int64_t v) const;

  Config cfg_;
  std::vector<View> views_;
  std::vector<SourceState> src_;
  std::vector<double> weights_;  // n_phases x n_sources, normalised
  std::vector<int64_t> emitted_; // n_phases x n_sources

  // pool, struct of arrays; the hot pair first. A finished document leaves a hole
  // (p_live_ = 0) that the next refill fills, so a live slot keeps its index and the
  // core can tell which documents the next picks will read (for prefetching).
  std::vector<int64_t> p_cur_, p_end_;
  std::vector<uint8_t> p_live_;
  std::vector<int32_t> p_view_, p_src_;
  std::vector<int64_t> p_start_, p_doc_, p_gid_;
  std::vector<int32_t> iota_;  // 0, 1, ..., seq_len1 - 1: position_ids are copied from it
  int64_t n_live_ = 0;

  uint64_t rng_ = 0;
  int64_t phase_ = -1;
  int64_t batches_ = 0;
  int64_t phase_tokens_left_ = -1;
  bool refilling_ = false;
  // in-progress batch (non-zero only between a kNeedView return and the next call)
  int64_t row_ = 0, pos_ = 0, nseg_ = 0;
  int64_t cu_width_ = 0;

  bool populate_ok_ = true;  // false once the kernel refused (e.g. Linux < 5.14)
  bool pop_whole_ = false;   // carried work: populate windows anywhere in a view (init_pop)
  int32_t err_view_ = -1, err_source_ = -1;
  int64_t err_doc_ = -1, err_value_ = 0;
};

// Map the pages of [addr, addr + nbytes) of a read-only file mapping into the page
// table now (madvise MADV_POPULATE_READ, Linux >= 5.14), instead of one page fault per
// page when random reads first touch them. Returns 0, or errno (e.g. EINVAL on older
// kernels, where the caller simply carries on with demand faults).
int populate(const void* addr, int64_t nbytes);

// Whether every page of [addr, addr + nbytes) of a file mapping is in the page cache
// (mincore); false on error or where mincore is not available.
bool resident(const void* addr, int64_t nbytes);

// Exposed for tests: the per-epoch permutation of [0, n).
uint64_t permute(uint64_t i, uint64_t n, const uint64_t keys[4]);
// The Feistel keys of (source, stream, epoch) under ``seed``: every stream's per-epoch order.
void epoch_keys(uint64_t seed, int32_t source, int64_t stream, uint64_t epoch, uint64_t keys[4]);

}  // namespace rsdb
