// MinHash band keys of many documents in one call (pipeline/stages/dedup/minhash.py keeps
// the NumPy reference, MinHasher.*_reference; tests/pipeline/test_minhash_native.py checks
// the two agree bit for bit).
//
// Per document, exactly as the reference: words are maximal runs of characters Python's
// `re` calls alphanumeric in `[^\W_]+` (Py_UNICODE_ISALNUM), each decimal digit
// (`\d`, Py_UNICODE_ISDECIMAL) counted as "0"; each word's UTF-8 bytes are hashed with
// XXH64; n consecutive word hashes combine polynomially into a shingle (mod 2^64); the
// sorted distinct shingles, capped, give a signature of multiply-shift hashes; each band
// of the signature is hashed with XXH64 (seed = band index). The caller lowercases the
// text (Python's str.lower(), whose full case mapping this need not repeat).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "xxh64.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using U64 = nb::ndarray<const uint64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I64Out = nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>;
using U64Out = nb::ndarray<nb::numpy, uint64_t, nb::ndim<1>>;

constexpr uint64_t kPrime = 0x100000001B3ull;  // the shingle polynomial's base (FNV prime)

void put_utf8(std::string& out, Py_UCS4 c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// XXH64 of every word of `text` (a Python str), in order.
void word_hashes(PyObject* text, std::vector<uint64_t>& out) {
  out.clear();
  const int kind = PyUnicode_KIND(text);
  const void* data = PyUnicode_DATA(text);
  const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
  std::string word;
  for (Py_ssize_t i = 0; i <= n; ++i) {
    const Py_UCS4 c = i < n ? PyUnicode_READ(kind, data, i) : 0;
    if (c < 0x80) {  // ASCII: the same classes, without four table look-ups per character
      if (c >= '0' && c <= '9') {
        word.push_back('0');
        continue;
      }
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        word.push_back(static_cast<char>(c));
        continue;
      }
    } else if (Py_UNICODE_ISALNUM(c)) {
      put_utf8(word, Py_UNICODE_ISDECIMAL(c) ? '0' : c);
      continue;
    }
    if (!word.empty()) {
      out.push_back(xxh64::hash(word.data(), word.size()));
      word.clear();
    }
  }
}

// Sorted distinct shingles of the word hashes, at most `cap` (the smallest ones).
void shingles_of(const std::vector<uint64_t>& h, size_t ngram, size_t cap, std::vector<uint64_t>& out) {
  out.clear();
  if (h.empty()) return;
  if (h.size() < ngram) {  // one shingle of all the words: sum of h[j] * P^j, xor-combined
    uint64_t x = 0, p = 1;
    for (uint64_t v : h) {
      x ^= v * p;
      p *= kPrime;
    }
    out.push_back(x);
    return;
  }
  out.reserve(h.size() - ngram + 1);
  for (size_t i = 0; i + ngram <= h.size(); ++i) {
    uint64_t acc = 0;
    for (size_t j = 0; j < ngram; ++j) acc = acc * kPrime + h[i + j];
    out.push_back(acc);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.size() > cap) out.resize(cap);
}

PyObject* checked_str(nb::handle item, size_t i) {
  if (!PyUnicode_Check(item.ptr())) throw nb::type_error(("texts[" + std::to_string(i) + "] is not a str").c_str());
  return item.ptr();
}

// Band keys of every text: a flat int64 array (num_bands per text that has a word, none
// for one that has not) and the number of keys of each text.
std::pair<I64Out, I64Out> band_keys(nb::list texts, U64 a, U64 b, size_t ngram, size_t max_shingles,
                                    size_t num_bands, size_t rows_per_band) {
  const size_t n_hash = num_bands * rows_per_band;
  if (a.shape(0) != n_hash || b.shape(0) != n_hash)
    throw std::invalid_argument("a and b need num_bands * rows_per_band entries");
  if (ngram == 0 || rows_per_band == 0) throw std::invalid_argument("ngram and rows_per_band must be positive");
  const size_t n_docs = nb::len(texts);
  std::vector<int64_t> keys, counts(n_docs);
  keys.reserve(n_docs * num_bands);
  std::vector<uint64_t> words, shingles;
  std::vector<uint64_t> acc(n_hash);
  std::vector<uint32_t> sig(n_hash);
  const uint64_t* pa = a.data();
  const uint64_t* pb = b.data();
  for (size_t d = 0; d < n_docs; ++d) {
    word_hashes(checked_str(texts[d], d), words);
    shingles_of(words, ngram, max_shingles, shingles);
    if (shingles.empty()) continue;
    std::fill(acc.begin(), acc.end(), ~0ull);
    for (uint64_t s : shingles)
      for (size_t k = 0; k < n_hash; ++k) acc[k] = std::min(acc[k], (s * pa[k] + pb[k]) >> 32);
    for (size_t k = 0; k < n_hash; ++k) sig[k] = static_cast<uint32_t>(acc[k]);
    for (size_t band = 0; band < num_bands; ++band) {
      const uint64_t h = xxh64::hash(sig.data() + band * rows_per_band, rows_per_band * 4, band);
      keys.push_back(static_cast<int64_t>(h ^ (1ull << 63)));  // h - 2^63, as the reference
    }
    counts[d] = static_cast<int64_t>(num_bands);
  }
  auto to_numpy = [](std::vector<int64_t>&& v) {
    auto* heap = new std::vector<int64_t>(std::move(v));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
    return I64Out(heap->data(), {heap->size()}, owner);
  };
  return {to_numpy(std::move(keys)), to_numpy(std::move(counts))};
}

// Sorted distinct shingles of one (lowercased) text: what band_keys signs.
U64Out shingles(nb::str text, size_t ngram, size_t max_shingles) {
  if (ngram == 0) throw std::invalid_argument("ngram must be positive");
  std::vector<uint64_t> words;
  auto* out = new std::vector<uint64_t>();
  word_hashes(text.ptr(), words);
  shingles_of(words, ngram, max_shingles, *out);
  nb::capsule owner(out, [](void* p) noexcept { delete static_cast<std::vector<uint64_t>*>(p); });
  return U64Out(out->data(), {out->size()}, owner);
}

uint64_t xxh64_digest(nb::bytes data, uint64_t seed) { return xxh64::hash(data.c_str(), data.size(), seed); }

}  // namespace

NB_MODULE(_minhash, m) {
  m.doc() = "MinHash band keys and shingles (pipeline/stages/dedup/minhash.py holds the NumPy reference)";
  m.def("band_keys", &band_keys, "texts"_a, "a"_a.noconvert(), "b"_a.noconvert(), "ngram"_a, "max_shingles"_a,
        "num_bands"_a, "rows_per_band"_a,
        "(keys, counts): num_bands int64 keys per lowercased text that has a word, counts per text");
  m.def("shingles", &shingles, "text"_a, "ngram"_a, "max_shingles"_a,
        "sorted distinct uint64 shingles of one lowercased text");
  m.def("xxh64", &xxh64_digest, "data"_a, "seed"_a = 0, "XXH64 of bytes (equals xxhash.xxh64_intdigest)");
}
