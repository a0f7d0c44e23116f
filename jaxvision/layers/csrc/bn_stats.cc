// Per-channel sums for training-mode batch normalization (jaxvision.layers.norm), as XLA FFI
// handlers that read bf16 (or f32) activations directly and accumulate in float32.
//
// Why: XLA:CPU (jaxlib 0.10) hands per-channel reductions to YNNPACK, which takes only
// materialized inputs, so the bf16 -> f32 convert (and the products) feeding each BatchNorm sum
// are written out as whole float32 activations, forward and backward; XLA's own (variadic)
// column reductions that would fuse them are ~3x slower than YNNPACK. These loops read the
// activations once, in their own dtype. The elementwise parts of BatchNorm stay XLA fusions.
//
//   Moments:  x (M, C)                         -> sum x, sum x^2            (C,) f32 each
//   GradSums: x, dy (M, C), mean, rstd (C,) f32 -> sum dy, sum dy * x_hat    (C,) f32 each
//             with x_hat = (x - mean) * rstd computed in f32 as the JAX code does.
//
// Work is split into a fixed number of row chunks (independent of the thread count), each
// summed in row order into its own partial, and the partials added in chunk order: the result
// does not depend on scheduling. Chunks run on XLA's intra-op thread pool; the calling thread
// takes chunks too and waits only for chunks a pool thread has already started, so a busy pool
// (every thread inside such a call) cannot deadlock.
// The loops need -O3's vectorizer (the build passes -O2, whose cost model leaves them scalar).
#pragma GCC optimize("O3")

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

inline float Bf16ToF32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Rows per chunk: enough work per chunk (>= 64 KiB of f32 partials' worth of input) to amortize
// scheduling, and at most kMaxChunks chunks.
constexpr int64_t kMaxChunks = 32;

int64_t NumChunks(int64_t m, int64_t c) {
  int64_t min_rows = c >= 16384 ? 1 : 16384 / (c > 0 ? c : 1);
  int64_t n = (m + min_rows - 1) / min_rows;
  return n < 1 ? 1 : (n > kMaxChunks ? kMaxChunks : n);
}

// Runs body(chunk) for chunk in [0, n) on the calling thread and the pool.
template <typename Body>
void ParallelChunks(ffi::ThreadPool& pool, int64_t n, Body body) {
  struct State {
    std::atomic<int64_t> next{0};
    int64_t n;
    std::mutex mu;
    std::condition_variable cv;
    int64_t done = 0;  // chunks finished (guarded by mu)
  };
  auto st = std::make_shared<State>();
  st->n = n;
  auto work = [st, body]() {
    for (;;) {
      int64_t i = st->next.fetch_add(1);
      if (i >= st->n) return;
      body(i);
      std::lock_guard<std::mutex> lock(st->mu);
      if (++st->done == st->n) st->cv.notify_all();
    }
  };
  int64_t helpers = pool.num_threads();
  if (helpers > n - 1) helpers = n - 1;
  for (int64_t t = 0; t < helpers; ++t) {
    auto task = work;  // Schedule takes ownership of a copy
    pool.Schedule(std::move(task));
  }
  work();
  // Every chunk is claimed now; wait for those a pool thread is still summing.
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait(lock, [&] { return st->done == st->n; });
}

// The loops, one per dtype, compiled for AVX-512 / AVX2 / baseline and picked at load time.
#define JV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

JV_CLONES void MomentsRowsF32(const float* x, int64_t rows, int64_t c, float* s1, float* s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float v = xr[j];
      s1[j] += v;
      s2[j] += v * v;
    }
  }
}

JV_CLONES void MomentsRowsBf16(const uint16_t* x, int64_t rows, int64_t c, float* s1,
                               float* s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* xr = x + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float v = Bf16ToF32(xr[j]);
      s1[j] += v;
      s2[j] += v * v;
    }
  }
}

JV_CLONES void GradRowsF32(const float* x, const float* dy, int64_t rows, int64_t c,
                           const float* mean, const float* rstd, float* sg, float* sgx) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    const float* gr = dy + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float g = gr[j];
      sg[j] += g;
      sgx[j] += g * ((xr[j] - mean[j]) * rstd[j]);
    }
  }
}

JV_CLONES void GradRowsBf16(const uint16_t* x, const uint16_t* dy, int64_t rows, int64_t c,
                            const float* mean, const float* rstd, float* sg, float* sgx) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* xr = x + r * c;
    const uint16_t* gr = dy + r * c;
    for (int64_t j = 0; j < c; ++j) {
      float g = Bf16ToF32(gr[j]);
      sg[j] += g;
      sgx[j] += g * ((Bf16ToF32(xr[j]) - mean[j]) * rstd[j]);
    }
  }
}

// Sums rows [r0, r1) in blocks of kBlockRows: each block is summed into zeroed block partials
// (t, 2 x C), which are then added into the chunk's partials p. A float32 running sum over a
// whole chunk (tens of thousands of rows) loses ~1e-3 relative; two levels keep the error near
// XLA's tree reductions (E[x^2] - mean^2 cancels, so the variance amplifies it).
constexpr int64_t kBlockRows = 64;

template <typename Rows>
void Blocked(int64_t r0, int64_t r1, int64_t c, float* p, Rows rows_fn) {
  std::vector<float> t(static_cast<size_t>(2 * c));
  for (int64_t b0 = r0; b0 < r1; b0 += kBlockRows) {
    int64_t b1 = b0 + kBlockRows < r1 ? b0 + kBlockRows : r1;
    std::fill(t.begin(), t.end(), 0.0f);
    rows_fn(b0, b1 - b0, t.data(), t.data() + c);
    for (int64_t j = 0; j < 2 * c; ++j) p[j] += t[j];
  }
}

ffi::Error Invalid(const char* what) { return ffi::Error(ffi::ErrorCode::kInvalidArgument, what); }

// Rows (product of all dims but the last) and channels (the last dim) of a buffer.
void RowsCols(ffi::AnyBuffer b, int64_t* m, int64_t* c) {
  auto d = b.dimensions();
  *c = d.size() == 0 ? 1 : d[d.size() - 1];
  *m = 1;
  for (size_t i = 0; i + 1 < d.size(); ++i) *m *= d[i];
}

// Sums the per-chunk partials (n chunks x 2 x C) in chunk order into out1, out2.
void Combine(const std::vector<float>& part, int64_t n, int64_t c, float* out1, float* out2) {
  for (int64_t j = 0; j < c; ++j) out1[j] = out2[j] = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float* p = part.data() + i * 2 * c;
    for (int64_t j = 0; j < c; ++j) {
      out1[j] += p[j];
      out2[j] += p[c + j];
    }
  }
}

ffi::Error MomentsImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> s1,
                       ffi::Result<ffi::AnyBuffer> s2) {
  auto t = x.element_type();
  if (t != ffi::DataType::F32 && t != ffi::DataType::BF16)
    return Invalid("jaxvision bn_stats: x must be float32 or bfloat16");
  if (s1->element_type() != ffi::DataType::F32 || s2->element_type() != ffi::DataType::F32)
    return Invalid("jaxvision bn_stats: sums must be float32");
  int64_t m, c;
  RowsCols(x, &m, &c);
  if (static_cast<int64_t>(s1->element_count()) != c || static_cast<int64_t>(s2->element_count()) != c)
    return Invalid("jaxvision bn_stats: sums must have x's last dimension");
  int64_t n = NumChunks(m, c);
  int64_t rows = (m + n - 1) / n;
  std::vector<float> part(static_cast<size_t>(n * 2 * c), 0.0f);
  const void* base = x.untyped_data();
  ParallelChunks(pool, n, [&, base](int64_t i) {
    int64_t r0 = i * rows, r1 = r0 + rows < m ? r0 + rows : m;
    if (r1 <= r0) return;
    float* p = part.data() + i * 2 * c;
    Blocked(r0, r1, c, p, [&](int64_t b, int64_t k, float* s1, float* s2) {
      if (t == ffi::DataType::BF16)
        MomentsRowsBf16(static_cast<const uint16_t*>(base) + b * c, k, c, s1, s2);
      else
        MomentsRowsF32(static_cast<const float*>(base) + b * c, k, c, s1, s2);
    });
  });
  Combine(part, n, c, s1->typed_data<float>(), s2->typed_data<float>());
  return ffi::Error::Success();
}

ffi::Error GradSumsImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer dy,
                        ffi::AnyBuffer mean, ffi::AnyBuffer rstd, ffi::Result<ffi::AnyBuffer> sg,
                        ffi::Result<ffi::AnyBuffer> sgx) {
  auto t = x.element_type();
  if ((t != ffi::DataType::F32 && t != ffi::DataType::BF16) || dy.element_type() != t)
    return Invalid("jaxvision bn_stats: x and dy must both be float32 or bfloat16");
  if (mean.element_type() != ffi::DataType::F32 || rstd.element_type() != ffi::DataType::F32 ||
      sg->element_type() != ffi::DataType::F32 || sgx->element_type() != ffi::DataType::F32)
    return Invalid("jaxvision bn_stats: mean, rstd and sums must be float32");
  int64_t m, c;
  RowsCols(x, &m, &c);
  if (dy.element_count() != x.element_count() || static_cast<int64_t>(mean.element_count()) != c ||
      static_cast<int64_t>(rstd.element_count()) != c || static_cast<int64_t>(sg->element_count()) != c ||
      static_cast<int64_t>(sgx->element_count()) != c)
    return Invalid("jaxvision bn_stats: dy must be x's shape; mean, rstd, sums its last dim");
  int64_t n = NumChunks(m, c);
  int64_t rows = (m + n - 1) / n;
  std::vector<float> part(static_cast<size_t>(n * 2 * c), 0.0f);
  const void* xb = x.untyped_data();
  const void* gb = dy.untyped_data();
  const float* mu = mean.typed_data<float>();
  const float* rs = rstd.typed_data<float>();
  ParallelChunks(pool, n, [&, xb, gb, mu, rs](int64_t i) {
    int64_t r0 = i * rows, r1 = r0 + rows < m ? r0 + rows : m;
    if (r1 <= r0) return;
    float* p = part.data() + i * 2 * c;
    Blocked(r0, r1, c, p, [&](int64_t b, int64_t k, float* s1, float* s2) {
      if (t == ffi::DataType::BF16)
        GradRowsBf16(static_cast<const uint16_t*>(xb) + b * c,
                     static_cast<const uint16_t*>(gb) + b * c, k, c, mu, rs, s1, s2);
      else
        GradRowsF32(static_cast<const float*>(xb) + b * c, static_cast<const float*>(gb) + b * c,
                    k, c, mu, rs, s1, s2);
    });
  });
  Combine(part, n, c, sg->typed_data<float>(), sgx->typed_data<float>());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvBnMoments, MomentsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvBnGradSums, GradSumsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
