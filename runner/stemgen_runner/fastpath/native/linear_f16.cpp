// y = x W^T + b with W stored as float16 and x, y, b float32, for CPUs with AVX2, FMA and F16C.
//
// Why not fbgemm's packed float16 GEMM: its AVX2 kernel blocks 6 rows, so a decoding step of
// 4 stems (8 rows with classifier-free guidance) streams every weight twice (1.8x the time of
// 2 rows). Here a weight block of 16 output columns is read from memory once and applied to all
// rows (in passes of at most 6) while it sits in cache, and the next block is prefetched during
// the passes: at full core speed one step's GEMMs cost ~1.1x at 8 rows what they cost at 2
// (bench/bench_kernels.py, docs/benchmarks.md).
//
// Every output element is computed by the same sequence of FMAs whatever the number of rows,
// the row's position in the batch or the thread count (one accumulator, k in order, the bias
// added at the end), so a row's result is bitwise independent of its batch mates.
//
// Packed layout (native.pack_f16): [N/16, K, 16] float16, block b holding output columns
// 16b..16b+15 with the 16 values of one k contiguous (two 16-byte loads per k).

#include <immintrin.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

namespace {

constexpr int64_t kColumns = 16;     // outputs per block: two AVX2 registers
constexpr int kMaxRows = 6;          // 6 rows x 2 registers = 12 accumulators (of 16 registers)
constexpr int64_t kRowTile = 48;     // rows whose activations stay in L2 while every block passes

inline __m256 load_half8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Rows x 16 outputs of one block; one accumulator per output, k in order. The accumulators
// are named variables, not an array: GCC keeps an array's copy in memory too and stores all 12
// registers every iteration, which made the loop store-bound.
#define STEMGEN_ROW(r)                                                       \
  if constexpr (Rows > r) {                                                  \
    const __m256 xr = _mm256_broadcast_ss(x + r * k_size + k);             \
    low##r = _mm256_fmadd_ps(xr, w_low, low##r);                             \
    high##r = _mm256_fmadd_ps(xr, w_high, high##r);                          \
  }
#define STEMGEN_STORE(r)                                                     \
  if constexpr (Rows > r) {                                                  \
    _mm256_storeu_ps(y + r * y_stride, _mm256_add_ps(low##r, bias_low));     \
    _mm256_storeu_ps(y + r * y_stride + 8, _mm256_add_ps(high##r, bias_high)); \
  }

// `ahead`: a slice of the NEXT block to pull into L2 while this pass computes, `ahead_step`
// bytes of it per k (null: none). Without it a second pass over 8 rows computes while memory
// idles, and the next block's first pass waits on memory while the FMA units idle.
template <int Rows>
inline void block_rows(const float* x, const uint16_t* w, int64_t k_size, const float* bias, float* y,
                       int64_t y_stride, const char* ahead, int64_t ahead_step) {
  __m256 low0 = _mm256_setzero_ps(), low1 = low0, low2 = low0, low3 = low0, low4 = low0, low5 = low0;
  __m256 high0 = low0, high1 = low0, high2 = low0, high3 = low0, high4 = low0, high5 = low0;
  for (int64_t k = 0; k < k_size; ++k) {
    const __m256 w_low = load_half8(w + k * kColumns);
    const __m256 w_high = load_half8(w + k * kColumns + 8);
    if (ahead != nullptr) {
      _mm_prefetch(ahead + k * ahead_step, _MM_HINT_T1);
    }
    STEMGEN_ROW(0) STEMGEN_ROW(1) STEMGEN_ROW(2) STEMGEN_ROW(3) STEMGEN_ROW(4) STEMGEN_ROW(5)
  }
  // Adding a zero bias is exact, so rows with and without bias share one store path.
  const __m256 bias_low = bias != nullptr ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  const __m256 bias_high = bias != nullptr ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
  STEMGEN_STORE(0) STEMGEN_STORE(1) STEMGEN_STORE(2) STEMGEN_STORE(3) STEMGEN_STORE(4) STEMGEN_STORE(5)
}
#undef STEMGEN_ROW
#undef STEMGEN_STORE

// Passes of at most 6 rows, balanced (8 rows = 4 + 4, not 6 + 2: a 2-row pass waits on FMA
// latency). Each pass prefetches its share of the next block (`next`, null for the last one).
void rows_through_block(const float* x, int64_t rows, int64_t k_size, const uint16_t* w, const float* bias,
                        float* y, int64_t y_stride, const uint16_t* next) {
  const int64_t passes = (rows + kMaxRows - 1) / kMaxRows;
  const int64_t block_bytes = k_size * kColumns * static_cast<int64_t>(sizeof(uint16_t));
  int64_t done = 0;
  for (int64_t p = 0; p < passes; ++p) {
    const int64_t size = (rows - done + (passes - p) - 1) / (passes - p);
    const float* xp = x + done * k_size;
    float* yp = y + done * y_stride;
    const char* ahead = next == nullptr ? nullptr : reinterpret_cast<const char*>(next) + p * block_bytes / passes;
    const int64_t step = block_bytes / passes / k_size;
    switch (size) {
      case 6: block_rows<6>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
      case 5: block_rows<5>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
      case 4: block_rows<4>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
      case 3: block_rows<3>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
      case 2: block_rows<2>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
      default: block_rows<1>(xp, w, k_size, bias, yp, y_stride, ahead, step); break;
    }
    done += size;
  }
}

at::Tensor linear_f16(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias,
                      int64_t out_features) {
  TORCH_CHECK(input.device().is_cpu() && packed.device().is_cpu(), "linear_f16 runs on CPU tensors");
  TORCH_CHECK(input.scalar_type() == at::kFloat, "linear_f16 input must be float32, got ", input.scalar_type());
  TORCH_CHECK(packed.scalar_type() == at::kHalf && packed.dim() == 3 && packed.size(2) == kColumns &&
                  packed.is_contiguous(),
              "linear_f16 weights must be packed [N/16, K, 16] float16");
  const int64_t blocks = packed.size(0);
  const int64_t k_size = packed.size(1);
  TORCH_CHECK(input.size(-1) == k_size, "linear_f16: input has ", input.size(-1), " features, weights ", k_size);
  TORCH_CHECK(out_features > 0 && out_features <= blocks * kColumns, "linear_f16: bad out_features");
  const float* bias_data = nullptr;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->is_contiguous() && bias->numel() == blocks * kColumns,
                "linear_f16 bias must be float32 padded to the packed width");
    bias_data = bias->data_ptr<float>();
  }
  const at::Tensor x = input.reshape({-1, k_size}).contiguous();
  const int64_t rows = x.size(0);
  at::Tensor y = at::empty({rows, blocks * kColumns}, x.options());
  const float* x_data = x.data_ptr<float>();
  float* y_data = y.data_ptr<float>();
  const auto* w_data = reinterpret_cast<const uint16_t*>(packed.data_ptr<at::Half>());
  const int64_t y_stride = blocks * kColumns;
  for (int64_t row0 = 0; row0 < rows; row0 += kRowTile) {
    const int64_t tile = std::min(kRowTile, rows - row0);
    // Blocks are claimed one at a time from a shared counter, each thread claiming its next block
    // before computing the current one (so the next block's weights stream in meanwhile). With 8
    // rows a block is arithmetic-bound, and on a shared VM one core may run at half speed for a
    // while (a busy neighbour on its sibling hyperthread): a fixed half per thread then waited for
    // the slow one; claiming lets the fast one take more (bench_kernels.py, docs/benchmarks.md).
    std::atomic<int64_t> unclaimed{0};
    const int64_t workers = std::min<int64_t>(at::get_num_threads(), blocks);
    at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
      int64_t current = unclaimed.fetch_add(1, std::memory_order_relaxed);
      while (current < blocks) {
        const int64_t upcoming = unclaimed.fetch_add(1, std::memory_order_relaxed);
        rows_through_block(x_data + row0 * k_size, tile, k_size, w_data + current * k_size * kColumns,
                           bias_data == nullptr ? nullptr : bias_data + current * kColumns,
                           y_data + row0 * y_stride + current * kColumns, y_stride,
                           upcoming < blocks ? w_data + upcoming * k_size * kColumns : nullptr);
        current = upcoming;
      }
    });
  }
  if (out_features != y_stride) {
    y = y.narrow(1, 0, out_features).contiguous();
  }
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = out_features;
  return y.view(shape);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(stemgen, m) {
  m.def("linear_f16(Tensor input, Tensor packed, Tensor? bias, int out_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(stemgen, CPU, m) {
  m.impl("linear_f16", &linear_f16);
}
