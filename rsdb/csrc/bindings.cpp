// nanobind glue only: the algorithm lives in rsdb.cpp.
//
// Shard arrays cross the boundary as nb::ndarray (C-contiguous, CPU, dtype checked here;
// never converted, so a read-only memory map stays zero-copy). The batch outputs of the
// per-batch fill() are raw addresses (see there). The core keeps raw pointers between
// calls: the Python wrapper (rsdb/loader.py) keeps every array alive for as long as the
// core may read or write it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "rsdb.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

template <class T>
std::vector<T> vec(const nb::dict& d, const char* key) {
  return nb::cast<std::vector<T>>(d[key]);
}

// Read-only input (shard offsets/tokens): any dtype, checked by the caller.
using InArray = nb::ndarray<nb::ro, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

nb::dlpack::dtype token_dtype(rsdb::DType d) {
  switch (d) {
    case rsdb::kU32: return nb::dtype<uint32_t>();
    case rsdb::kI32: return nb::dtype<int32_t>();
    case rsdb::kU16: return nb::dtype<uint16_t>();
  }
  throw nb::value_error("unknown token dtype");
}

template <class T>
T* ptr(uintptr_t addr) {
  return reinterpret_cast<T*>(addr);
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "RSDB compiled core (private; import rsdb instead)";
  m.def("core_version", &rsdb::core_version);
  nb::enum_<rsdb::Status>(m, "Status", "What fill() returned (error_* say where a problem is)")
      .value("OK", rsdb::kOk, "batch complete")
      .value("NEED_VIEW", rsdb::kNeedView, "register error_view with set_view, then call fill again")
      .value("BAD_DOC", rsdb::kBadDoc, "a document's offsets are out of range")
      .value("BAD_TOKEN", rsdb::kBadToken, "a token id is >= the view's bound")
      .value("EMPTY_SOURCE", rsdb::kEmptySource, "a weighted source has no tokens in this stream");
  nb::enum_<rsdb::DType>(m, "DType", "Token dtype of a shard view")
      .value("U32", rsdb::kU32)
      .value("I32", rsdb::kI32)
      .value("U16", rsdb::kU16);
  m.def(
      "populate",
      [](InArray a, int64_t begin, int64_t count) {
        if (begin < 0 || count < 0 || begin + count > static_cast<int64_t>(a.size()))
          throw nb::value_error("populate: element range out of bounds");
        const auto* base = static_cast<const char*>(a.data()) + begin * static_cast<int64_t>(a.itemsize());
        nb::gil_scoped_release release;
        return rsdb::populate(base, count * static_cast<int64_t>(a.itemsize()));
      },
      "array"_a.noconvert(), "begin"_a, "count"_a,
      "Map elements [begin, begin + count) of a (memory-mapped) array into the page table; returns 0 on success.");
  m.def(
      "permute",
      [](uint64_t i, uint64_t n, std::vector<uint64_t> keys) {
        if (keys.size() != 4) throw nb::value_error("permute needs 4 keys");
        if (i >= n) throw nb::value_error("i must be < n");
        return rsdb::permute(i, n, keys.data());
      },
      "i"_a, "n"_a, "keys"_a);
  m.def(
      "epoch_keys",
      [](uint64_t seed, int32_t source, int64_t stream, uint64_t epoch) {
        uint64_t keys[4];
        rsdb::epoch_keys(seed, source, stream, epoch, keys);
        return std::vector<uint64_t>(keys, keys + 4);
      },
      "seed"_a, "source"_a, "stream"_a, "epoch"_a,
      "The Feistel keys of a source's per-epoch order in one stream (what the loader permutes with).");

  nb::class_<rsdb::Core>(m, "Core")
      .def(
          "__init__",
          [](rsdb::Core* self, int64_t seq_len1, int64_t batch_size, int64_t buffer_docs, int64_t max_chunk,
             int64_t refill_batch, uint64_t seed, int64_t stream_index, int64_t num_streams, int64_t epochs,
             int64_t n_sources, int64_t n_phases, bool prefetch, int64_t populate_window, int64_t block_shards) {
            rsdb::Config c;
            c.seq_len1 = seq_len1;
            c.batch_size = batch_size;
            c.buffer_docs = buffer_docs;
            c.max_chunk = max_chunk;
            c.refill_batch = refill_batch;
            c.seed = seed;
            c.stream_index = stream_index;
            c.num_streams = num_streams;
            c.epochs = epochs;
            c.n_sources = n_sources;
            c.n_phases = n_phases;
            c.prefetch = prefetch;
            c.populate_window = populate_window;
            c.block_shards = block_shards;
            new (self) rsdb::Core(c);
          },
          "seq_len1"_a, "batch_size"_a, "buffer_docs"_a, "max_chunk"_a, "refill_batch"_a, "seed"_a,
          "stream_index"_a, "num_streams"_a, "epochs"_a, "n_sources"_a, "n_phases"_a, "prefetch"_a = true,
          "populate_window"_a = 0, "block_shards"_a = 0)
      .def("add_range", &rsdb::Core::add_range, "source"_a, "view"_a, "begin"_a, "end"_a, "doc_base"_a)
      .def("add_unit", &rsdb::Core::add_unit, "source"_a, "view"_a, "n_docs"_a, "doc_base"_a)
      .def(
          "piece_tokens",
          [](rsdb::Core& c, int32_t source, int64_t streams, int64_t stream, uint64_t epoch, int64_t begin,
             int64_t end) { return c.piece_tokens(source, rsdb::Piece{streams, stream, epoch, begin, end}); },
          "source"_a, "streams"_a, "stream"_a, "epoch"_a, "begin"_a, "end"_a)
      .def(
          "piece_docs",
          [](const rsdb::Core& c, int32_t source, int64_t streams, int64_t stream, uint64_t epoch, int64_t begin,
             int64_t end) {
            if (source < 0 || source >= static_cast<int32_t>(c.sources().size()) || streams < 1 || stream < 0 ||
                stream >= streams)
              throw nb::value_error("piece_docs: source or stream out of range");
            return c.piece_docs(source, rsdb::Piece{streams, stream, epoch, begin, end});
          },
          "source"_a, "streams"_a, "stream"_a, "epoch"_a, "begin"_a, "end"_a)
      .def("slice_docs", &rsdb::Core::slice_docs, "source"_a, "streams"_a, "stream"_a)
      .def(
          "first_use",
          [](const rsdb::Core& c, int32_t source, uint64_t epoch, int64_t walk) {
            if (source < 0 || source >= static_cast<int32_t>(c.sources().size()))
              throw nb::value_error("first_use: source out of range");
            return c.first_use(source, epoch, walk);
          },
          "source"_a, "epoch"_a, "walk"_a = 2000000,
          "Shards of a source in the order this stream first reads them in an epoch: flat (position, view) pairs.")
      .def("views_in_use", &rsdb::Core::views_in_use,
           "Views that live pool slots, carried work or a source's current block may still read.")
      .def("release_view", &rsdb::Core::release_view, "view"_a,
           "Forget a view's pointers so it can be unmapped; False if a live pool slot still reads it.")
      .def("view_ready", &rsdb::Core::view_ready, "view"_a)
      .def("reshape", &rsdb::Core::reshape, "batch_size"_a, "seq_len1"_a)
      .def(
          "set_view",
          [](rsdb::Core& c, int32_t view, InArray offsets, InArray tokens, rsdb::DType dtype, uint64_t bound) {
            if (offsets.dtype() != nb::dtype<int64_t>() || offsets.shape(0) < 1)
              throw nb::value_error("set_view: offsets must be a non-empty int64 array");
            if (tokens.dtype() != token_dtype(dtype))
              throw nb::value_error("set_view: the tokens array's dtype does not match dtype");
            c.set_view(view, static_cast<const int64_t*>(offsets.data()), static_cast<int64_t>(offsets.shape(0)) - 1,
                       tokens.data(), static_cast<int64_t>(tokens.shape(0)), static_cast<int>(dtype), bound);
          },
          "view"_a, "offsets"_a.noconvert(), "tokens"_a.noconvert(), "dtype"_a, "bound"_a)
      .def("set_weights", &rsdb::Core::set_weights, "weights"_a)
      // fill() is the per-batch hot call, so its outputs stay raw addresses: nb::ndarray
      // checks of its seven arrays cost ~1 us per call, +38% at a tiny shape (seq_len 16,
      // batch 1: 2.6 -> 3.6 us per batch), measured with the loader. The wrapper checks
      // them once, when it allocates a buffer set or in next_into(), and keeps them alive.
      .def(
          "fill",
          [](rsdb::Core& c, uintptr_t tokens, uintptr_t position_ids, uintptr_t doc_ids, uintptr_t source_ids,
             uintptr_t loss_mask, uintptr_t cu_seqlens, uintptr_t n_segments, int64_t phase,
             int64_t phase_tokens_left, bool doc_ids_64) {
            if (tokens == 0) throw nb::value_error("fill: tokens is required");
            rsdb::Outputs o;
            o.tokens = ptr<int32_t>(tokens);
            o.position_ids = ptr<int32_t>(position_ids);
            o.doc_ids = ptr<void>(doc_ids);
            o.doc_ids_64 = doc_ids_64;
            o.source_ids = ptr<int16_t>(source_ids);
            o.loss_mask = ptr<bool>(loss_mask);
            o.cu_seqlens = ptr<int32_t>(cu_seqlens);
            o.n_segments = ptr<int32_t>(n_segments);
            return c.fill(o, phase, phase_tokens_left);
          },
          nb::call_guard<nb::gil_scoped_release>(), "tokens"_a, "position_ids"_a, "doc_ids"_a, "source_ids"_a,
          "loss_mask"_a, "cu_seqlens"_a, "n_segments"_a, "phase"_a, "phase_tokens_left"_a = -1,
          "doc_ids_64"_a = false)
      .def("get_state",
           [](const rsdb::Core& c) {
             rsdb::State s = c.get_state();
             nb::dict d;
             d["version"] = s.version;
             d["rng"] = s.rng;
             d["phase"] = s.phase;
             d["batches"] = s.batches;
             d["refilling"] = s.refilling;
             d["slot_index"] = s.slot_index;
             d["slot_source"] = s.slot_source;
             d["slot_view"] = s.slot_view;
             d["slot_doc"] = s.slot_doc;
             d["slot_head"] = s.slot_head;
             d["epoch"] = s.epoch;
             d["cursor"] = s.cursor;
             d["exhausted"] = s.exhausted;
             d["epoch_tokens"] = s.epoch_tokens;
             d["emitted"] = s.emitted;
             d["partial_count"] = s.partial_count;
             d["partial_view"] = s.partial_view;
             d["partial_doc"] = s.partial_doc;
             d["partial_head"] = s.partial_head;
             d["carry_count"] = s.carry_count;
             d["carry_streams"] = s.carry_streams;
             d["carry_stream"] = s.carry_stream;
             d["carry_epoch"] = s.carry_epoch;
             d["carry_begin"] = s.carry_begin;
             d["carry_end"] = s.carry_end;
             d["own_n_local"] = s.own_n_local;
             return d;
           })
      .def("set_state",
           [](rsdb::Core& c, const nb::dict& d) {
             rsdb::State s;
             s.version = nb::cast<int>(d["version"]);
             s.rng = nb::cast<uint64_t>(d["rng"]);
             s.phase = nb::cast<int64_t>(d["phase"]);
             s.batches = nb::cast<int64_t>(d["batches"]);
             s.refilling = nb::cast<bool>(d["refilling"]);
             s.slot_index = vec<int64_t>(d, "slot_index");
             s.slot_source = vec<int32_t>(d, "slot_source");
             s.slot_view = vec<int32_t>(d, "slot_view");
             s.slot_doc = vec<int64_t>(d, "slot_doc");
             s.slot_head = vec<int64_t>(d, "slot_head");
             s.epoch = vec<uint64_t>(d, "epoch");
             s.cursor = vec<uint64_t>(d, "cursor");
             s.exhausted = vec<int64_t>(d, "exhausted");
             s.epoch_tokens = vec<int64_t>(d, "epoch_tokens");
             s.emitted = vec<int64_t>(d, "emitted");
             s.partial_count = vec<int64_t>(d, "partial_count");
             s.partial_view = vec<int32_t>(d, "partial_view");
             s.partial_doc = vec<int64_t>(d, "partial_doc");
             s.partial_head = vec<int64_t>(d, "partial_head");
             s.carry_count = vec<int64_t>(d, "carry_count");
             s.carry_streams = vec<int64_t>(d, "carry_streams");
             s.carry_stream = vec<int64_t>(d, "carry_stream");
             s.carry_epoch = vec<uint64_t>(d, "carry_epoch");
             s.carry_begin = vec<int64_t>(d, "carry_begin");
             s.carry_end = vec<int64_t>(d, "carry_end");
             return c.set_state(s);
           })
      .def_prop_ro("error_view", &rsdb::Core::error_view)
      .def_prop_ro("error_doc", &rsdb::Core::error_doc)
      .def_prop_ro("error_value", &rsdb::Core::error_value)
      .def_prop_ro("error_source", &rsdb::Core::error_source)
      .def_prop_ro("n_active", &rsdb::Core::n_active)
      .def_prop_ro("batches", &rsdb::Core::batches)
      .def_prop_ro("cu_width", &rsdb::Core::cu_width)
      .def_prop_ro("emitted", [](const rsdb::Core& c) { return c.emitted(); })
      .def("n_local", &rsdb::Core::n_local, "source"_a)
      .def("all_exhausted", &rsdb::Core::all_exhausted)
      .def("source_progress", [](const rsdb::Core& c) {
        // (epoch, cursor, n_local, exhausted) per source
        nb::list out;
        for (const auto& s : c.sources())
          out.append(nb::make_tuple(s.epoch, s.cursor, s.n_local, s.exhausted));
        return out;
      });
}
