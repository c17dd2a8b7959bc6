// Native scans of the Gopher repetition rules (pipeline/stages/filters/_ngrams.py holds
// the NumPy reference each one must equal; tests/pipeline/test_textops.py checks that).
//
// Both take one 64-bit hash per n-gram (equal hashes are equal n-grams, as in the
// reference) and replace a sort plus a Python loop by one pass over an open-addressing
// table sized to the document.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Hashes = nb::ndarray<const uint64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Chars = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// Open addressing over the hash values themselves (already well mixed); slot i holds
// key[i] when used[i]. Capacity: a power of two at least twice the n-gram count.
class Table {
 public:
  explicit Table(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    mask_ = cap - 1;
    keys_.resize(cap);
    used_.assign(cap, 0);
  }
  // The slot of key (inserted if new); `fresh` tells which.
  size_t slot(uint64_t key, bool& fresh) {
    size_t i = (key * 0x9E3779B97F4A7C15ull) >> 7 & mask_;
    while (used_[i]) {
      if (keys_[i] == key) {
        fresh = false;
        return i;
      }
      i = (i + 1) & mask_;
    }
    used_[i] = 1;
    keys_[i] = key;
    fresh = true;
    return i;
  }
  size_t capacity() const { return mask_ + 1; }

 private:
  size_t mask_;
  std::vector<uint64_t> keys_;
  std::vector<uint8_t> used_;
};

void check(const Hashes& h, const Chars& chars, int64_t n) {
  if (h.shape(0) != chars.shape(0)) throw nb::value_error("hashes and chars differ in length");
  if (n < 1) throw nb::value_error("n must be at least 1");
}

// DataTrove's find_all_duplicate: scan left to right; an n-gram already seen adds its
// characters and the scan jumps past it, else it is marked seen and the scan steps by 1.
int64_t dup_ngram_chars(const Hashes& h, const Chars& chars, int64_t n) {
  check(h, chars, n);
  const size_t len = h.shape(0);
  const uint64_t* hp = h.data();
  const int64_t* cp = chars.data();
  int64_t total = 0;
  {
    nb::gil_scoped_release release;
    Table seen(len);
    bool fresh;
    for (size_t i = 0; i < len;) {
      seen.slot(hp[i], fresh);
      if (fresh) {
        i += 1;
      } else {
        total += cp[i];
        i += static_cast<size_t>(n);
      }
    }
  }
  return total;
}

// Characters of the most frequent n-gram (ties: the one that occurs first) times its
// count, the n-1 separating spaces included.
int64_t top_ngram_chars(const Hashes& h, const Chars& chars, int64_t n) {
  check(h, chars, n);
  const size_t len = h.shape(0);
  if (len == 0) throw nb::value_error("no n-grams");
  const uint64_t* hp = h.data();
  const int64_t* cp = chars.data();
  int64_t best_count = 0, best_first = 0;
  {
    nb::gil_scoped_release release;
    Table table(len);
    std::vector<int64_t> count(table.capacity(), 0), first(table.capacity(), 0);
    bool fresh;
    for (size_t i = 0; i < len; ++i) {
      size_t s = table.slot(hp[i], fresh);
      if (fresh) first[s] = static_cast<int64_t>(i);
      int64_t c = ++count[s];
      // Counts only grow, so the leader is the first n-gram to reach the top count...
      if (c > best_count) {
        best_count = c;
        best_first = first[s];
      } else if (c == best_count && first[s] < best_first) {
        best_first = first[s];  // ...or, on a tie, the one that occurs first
      }
    }
  }
  return (cp[best_first] + (n - 1)) * best_count;
}

}  // namespace

NB_MODULE(_textops, m) {
  m.doc() = "Native text scans of the quality rules (private; see pipeline/stages/filters/_ngrams.py)";
  m.def("dup_ngram_chars", &dup_ngram_chars, "hashes"_a.noconvert(), "chars"_a.noconvert(), "n"_a,
        "Characters in repeated n-grams, DataTrove's left-to-right scan (see _ngrams.py).");
  m.def("top_ngram_chars", &top_ngram_chars, "hashes"_a.noconvert(), "chars"_a.noconvert(), "n"_a,
        "Characters covered by the most frequent n-gram (ties: the first to occur).");
}
