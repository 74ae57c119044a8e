// Attention of one new position over a KV cache prefix (a decoding step), for CPUs with AVX2/FMA.
//
// Why: with q_len = 1, PyTorch's CPU SDPA (and matmul + softmax + matmul) reads the cache at
// ~11 GB/s; at 4 stems that was a quarter of a step. Each (row, head) here streams its keys and
// values once, contiguous, with the scores in a small per-thread buffer (~15 GB/s), and the cache
// may be float16 (half the bytes).
//
// float32 arithmetic whatever the cache stores; the result differs from SDPA only in summation
// order and in the exp polynomial (relative error ~1e-7), checked against SDPA by
// tests/unit/test_native_kernels.py.

#include <immintrin.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kHeadDim = 64;  // every MusicGen size (small, medium, large) has 64-wide heads
constexpr int kChunks = kHeadDim / 8;

// exp for x <= 0 (scores minus their max): Cody-Waite range reduction and a degree-5
// polynomial, the classic single-precision scheme (max relative error ~2e-7).
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(exponent));
}

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

template <typename T>
inline __m256 dot_partial(const __m256* q, const T* key) {
  __m256 acc = _mm256_mul_ps(q[0], load8(key));
  for (int c = 1; c < kChunks; ++c) {
    acc = _mm256_fmadd_ps(q[c], load8(key + 8 * c), acc);
  }
  return acc;
}

inline float horizontal_sum(__m256 v) {
  const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
}

// Eight partial-dot vectors -> one vector of their eight sums.
inline __m256 sum_eight(const __m256* a) {
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// T: float (float32 cache) or uint16_t (float16 cache: half the bytes to stream, same float32 math).
template <typename T>
void attend(const float* query, const T* keys, const T* values, int64_t length, float scale,
            float* scores, float* out) {
  __m256 q[kChunks];
  for (int c = 0; c < kChunks; ++c) {
    q[c] = _mm256_mul_ps(_mm256_loadu_ps(query + 8 * c), _mm256_set1_ps(scale));
  }
  int64_t t = 0;
  __m256 max8 = _mm256_set1_ps(-INFINITY);
  for (; t + 8 <= length; t += 8) {
    __m256 partial[8];
    for (int j = 0; j < 8; ++j) {
      partial[j] = dot_partial(q, keys + (t + j) * kHeadDim);
    }
    const __m256 s = sum_eight(partial);
    _mm256_storeu_ps(scores + t, s);
    max8 = _mm256_max_ps(max8, s);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, max8);
  float max_score = lanes[0];
  for (int j = 1; j < 8; ++j) max_score = std::max(max_score, lanes[j]);
  for (; t < length; ++t) {
    scores[t] = horizontal_sum(dot_partial(q, keys + t * kHeadDim));
    max_score = std::max(max_score, scores[t]);
  }
  // Padding the scores to a multiple of 8 with -inf lets one vector loop take the exps.
  const int64_t padded = (length + 7) / 8 * 8;
  for (int64_t p = length; p < padded; ++p) scores[p] = -INFINITY;
  const __m256 max_v = _mm256_set1_ps(max_score);
  __m256 total = _mm256_setzero_ps();
  for (int64_t p = 0; p < padded; p += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + p), max_v));
    _mm256_storeu_ps(scores + p, e);
    total = _mm256_add_ps(total, e);
  }
  __m256 acc[kChunks];
  for (int c = 0; c < kChunks; ++c) acc[c] = _mm256_setzero_ps();
  for (int64_t s = 0; s < length; ++s) {
    const __m256 weight = _mm256_broadcast_ss(scores + s);
    const T* value = values + s * kHeadDim;
    for (int c = 0; c < kChunks; ++c) {
      acc[c] = _mm256_fmadd_ps(weight, load8(value + 8 * c), acc[c]);
    }
  }
  const __m256 inverse = _mm256_set1_ps(1.0f / horizontal_sum(total));
  for (int c = 0; c < kChunks; ++c) {
    _mm256_storeu_ps(out + 8 * c, _mm256_mul_ps(acc[c], inverse));
  }
}

void check_cache(const at::Tensor& t, const char* name) {
  TORCH_CHECK((t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf) && t.dim() == 4 &&
                  t.size(3) == kHeadDim && t.stride(3) == 1 && t.stride(2) == kHeadDim,
              "decode_attention: ", name, " must be float32 or float16 [B, H, T, 64] with contiguous positions");
}

template <typename T>
void attend_all(const float* q_data, const T* k_data, const T* v_data, float* out_data, int64_t heads,
                int64_t length, int64_t k_b, int64_t k_h, int64_t v_b, int64_t v_h, int64_t pairs, float scale) {
  at::parallel_for(0, pairs, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores((length + 7) / 8 * 8);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / heads, h = i % heads;
      attend(q_data + i * kHeadDim, k_data + b * k_b + h * k_h, v_data + b * v_b + h * v_h, length, scale,
             scores.data(), out_data + i * kHeadDim);
    }
  });
}

at::Tensor decode_attention(const at::Tensor& query, const at::Tensor& keys, const at::Tensor& values, double scale) {
  TORCH_CHECK(query.device().is_cpu() && keys.device().is_cpu() && values.device().is_cpu(),
              "decode_attention runs on CPU tensors");
  TORCH_CHECK(query.scalar_type() == at::kFloat && query.dim() == 4 && query.size(2) == 1 &&
                  query.size(3) == kHeadDim,
              "decode_attention: query must be float32 [B, H, 1, 64]");
  check_cache(keys, "keys");
  check_cache(values, "values");
  TORCH_CHECK(keys.sizes() == values.sizes() && keys.size(0) == query.size(0) && keys.size(1) == query.size(1),
              "decode_attention: query, keys and values disagree on batch or heads");
  TORCH_CHECK(keys.scalar_type() == values.scalar_type(), "decode_attention: keys and values differ in dtype");
  const int64_t batch = query.size(0), heads = query.size(1), length = keys.size(2);
  TORCH_CHECK(length > 0, "decode_attention: empty cache");
  const at::Tensor q = query.contiguous();
  at::Tensor out = at::empty_like(q);
  const float* q_data = q.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  const int64_t k_b = keys.stride(0), k_h = keys.stride(1), v_b = values.stride(0), v_h = values.stride(1);
  const auto s = static_cast<float>(scale);
  if (keys.scalar_type() == at::kHalf) {
    attend_all(q_data, reinterpret_cast<const uint16_t*>(keys.data_ptr<at::Half>()),
               reinterpret_cast<const uint16_t*>(values.data_ptr<at::Half>()), out_data, heads, length, k_b, k_h,
               v_b, v_h, batch * heads, s);
  } else {
    attend_all(q_data, keys.data_ptr<float>(), values.data_ptr<float>(), out_data, heads, length, k_b, k_h, v_b,
               v_h, batch * heads, s);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(stemgen, m) {
  m.def("decode_attention(Tensor query, Tensor keys, Tensor values, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(stemgen, CPU, m) {
  m.impl("decode_attention", &decode_attention);
}
