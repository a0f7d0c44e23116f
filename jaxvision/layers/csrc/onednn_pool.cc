// oneDNN pooling (max and average, forward and backward) as XLA FFI handlers, for
// jaxvision.layers.onednn_pool. Activations are NHWC, float32 or bfloat16 (the same dtype in and
// out). Primitives are created once per shape and kept; each execution gets its own scratchpad.
//
// Attributes (all int64): kh, kw window; sh, sw strides; ph0, ph1, pw0, pw1 explicit
// non-negative padding, each smaller than the window (so no window lies wholly in the padding);
// algo 0 = max (padded positions never win), 1 = average over the whole window (padding counted
// as zeros, PyTorch's count_include_pad=True), 2 = average over the real pixels only
// (TensorFlow's "SAME", count_include_pad=False).
//
// NaN and -inf: oneDNN 3.2's max pooling skips NaN (XLA's max propagates it) and, in float32,
// starts from -FLT_MAX (a window of -inf gives -FLT_MAX, XLA's -inf). The max handlers scan x
// for either value (memory-bound, a few ms on ResNet-50's stem) and, only when one is there,
// recompute y with XLA's semantics (FixSpecial); the workspace keeps oneDNN's choice there.
//
// Max pooling in training saves oneDNN's workspace (the index of each window's maximum, the
// first one in row-major window order on ties) as a second output of JvPoolForwardTraining, an
// opaque uint8 array whose byte size must equal the primitive's workspace size (checked);
// JvPoolMaxBackward routes each dy to that index.
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "onednn_common.h"

namespace {

struct Geometry {
  int64_t n, h, w, c, oh, ow;
  int64_t kh, kw, sh, sw, ph0, ph1, pw0, pw1, algo;
  memory::data_type type;

  std::string Key(int kind) const {
    char b[320];
    std::snprintf(b, sizeof b, "%d/%d|%lld,%lld,%lld,%lld,%lld,%lld|%lld,%lld,%lld,%lld,%lld,"
                  "%lld,%lld,%lld,%lld", kind, static_cast<int>(type), (long long)n,
                  (long long)h, (long long)w, (long long)c, (long long)oh, (long long)ow,
                  (long long)kh, (long long)kw, (long long)sh, (long long)sw, (long long)ph0,
                  (long long)ph1, (long long)pw0, (long long)pw1, (long long)algo);
    return b;
  }
  memory::desc Src() const { return {{n, c, h, w}, type, memory::format_tag::nhwc}; }
  memory::desc Dst() const { return {{n, c, oh, ow}, type, memory::format_tag::nhwc}; }
  dnnl::algorithm Algorithm() const {
    return algo == 0   ? dnnl::algorithm::pooling_max
           : algo == 1 ? dnnl::algorithm::pooling_avg_include_padding
                       : dnnl::algorithm::pooling_avg_exclude_padding;
  }
  // oneDNN counts dilation from 0 (none); jaxvision's pooling has none.
  memory::dims Dilation() const { return {0, 0}; }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims Kernel() const { return {kh, kw}; }
  memory::dims PadLow() const { return {ph0, pw0}; }
  memory::dims PadHigh() const { return {ph1, pw1}; }
};

dnnl::pooling_forward::primitive_desc ForwardDesc(const Geometry& g, dnnl::prop_kind prop) {
  return {Engine(), prop, g.Algorithm(), g.Src(), g.Dst(), g.Strides(), g.Kernel(),
          g.Dilation(), g.PadLow(), g.PadHigh(), Attr()};
}

using Forward = Entry<dnnl::pooling_forward::primitive_desc, dnnl::pooling_forward>;
using Backward = Entry<dnnl::pooling_backward::primitive_desc, dnnl::pooling_backward>;

std::shared_ptr<Forward> CachedForward(const Geometry& g, dnnl::prop_kind prop) {
  int kind = prop == dnnl::prop_kind::forward_training ? 1 : 0;
  return Cached<Forward>(g.Key(kind), [&] { return ForwardDesc(g, prop); });
}

std::shared_ptr<Backward> CachedBackward(const Geometry& g) {
  return Cached<Backward>(g.Key(2), [&] {
    return dnnl::pooling_backward::primitive_desc(
        Engine(), g.Algorithm(), g.Src(), g.Dst(), g.Strides(), g.Kernel(), g.Dilation(),
        g.PadLow(), g.PadHigh(), ForwardDesc(g, dnnl::prop_kind::forward_training), Attr());
  });
}

// big: (N, H, W, C) input side; small: (N, OH, OW, C) output side.
Geometry Make(ffi::Span<const int64_t> big, ffi::Span<const int64_t> small, int64_t kh,
              int64_t kw, int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0,
              int64_t pw1, int64_t algo, ffi::DataType type) {
  return Geometry{big[0], big[1], big[2], big[3], small[1], small[2], kh, kw, sh, sw,
                  ph0, ph1, pw0, pw1, algo, TypeOf(type)};
}

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxvision oneDNN pooling: " + what);
}

ffi::Error CheckArgs(ffi::DataType a, ffi::DataType b, int64_t algo) {
  if (!Supported(a) || a != b) return Invalid("input and output must both be float32 or bfloat16");
  if (algo < 0 || algo > 2) return Invalid("algo must be 0 (max), 1 or 2 (average)");
  return ffi::Error::Success();
}

// Bits of float32 (U = uint32_t) or bfloat16 (U = uint16_t) values.
template <typename U>
struct Bits;
template <>
struct Bits<uint32_t> {
  static constexpr uint32_t kAbs = 0x7fffffffu, kInf = 0x7f800000u;
  static float Load(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
  static uint32_t Store(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }
};
template <>
struct Bits<uint16_t> {
  static constexpr uint16_t kAbs = 0x7fff, kInf = 0x7f80;
  static float Load(uint16_t b) { return Bits<uint32_t>::Load(uint32_t(b) << 16); }
  // Exact: every value stored is one of x's (bf16) values, -inf or the quiet NaN 0x7fc00000.
  static uint16_t Store(float f) { return uint16_t(Bits<uint32_t>::Store(f) >> 16); }
};

// Whether any of x's n values is NaN or -inf: |bits| + sign bit exceeds +inf's bits exactly for
// those (NaN: |bits| > inf; -inf: inf + 1; the largest negative finite: at most inf). A max
// reduction, which GCC vectorizes at -O3: ~4.5 ms for ResNet-50's stem pool input in float32
// (12.8 M values; an |= of the two tests, not vectorized, took 40-60 ms; loaded 2-core machine).
template <typename U>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3")))
#endif
bool AnySpecial(const U* x, int64_t n) {
  constexpr int kSignShift = 8 * sizeof(U) - 1;
  U m = 0;
  for (int64_t i = 0; i < n; ++i) {
    U t = U((x[i] & Bits<U>::kAbs) + (x[i] >> kSignShift));
    m = t > m ? t : m;
  }
  return m > Bits<U>::kInf;
}

// y = max pooling of x with XLA's semantics: NaN when the window holds one, else the maximum
// of its real pixels (-inf when they all are). Scalar; run only when AnySpecial.
template <typename U>
void ReferenceMax(const U* x, U* y, const Geometry& g) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> m(g.c);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
        for (int64_t i = 0; i < g.kh; ++i) {
          int64_t ih = oh * g.sh - g.ph0 + i;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            int64_t iw = ow * g.sw - g.pw0 + j;
            if (iw < 0 || iw >= g.w) continue;
            const U* px = x + ((n * g.h + ih) * g.w + iw) * g.c;
            for (int64_t c = 0; c < g.c; ++c) {
              float v = Bits<U>::Load(px[c]);
              if (v != v || m[c] != m[c]) m[c] = nan;
              else if (v > m[c]) m[c] = v;
            }
          }
        }
        U* py = y + ((n * g.oh + oh) * g.ow + ow) * g.c;
        for (int64_t c = 0; c < g.c; ++c) py[c] = Bits<U>::Store(m[c]);
      }
}

// After oneDNN's max pooling: XLA's values where x holds NaN or -inf (see the top).
void FixSpecial(const void* x, void* y, const Geometry& g) {
  if (g.algo != 0) return;
  int64_t n = g.n * g.h * g.w * g.c;
  if (g.type == memory::data_type::bf16) {
    auto* xb = static_cast<const uint16_t*>(x);
    if (AnySpecial(xb, n)) ReferenceMax(xb, static_cast<uint16_t*>(y), g);
  } else {
    auto* xf = static_cast<const uint32_t*>(x);
    if (AnySpecial(xf, n)) ReferenceMax(xf, static_cast<uint32_t*>(y), g);
  }
}

// x (N, H, W, C) -> y (N, OH, OW, C), inference (no workspace).
ffi::Error PoolForwardImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t kh,
                           int64_t kw, int64_t sh, int64_t sw, int64_t ph0, int64_t ph1,
                           int64_t pw0, int64_t pw1, int64_t algo) {
  if (auto e = CheckArgs(x.element_type(), y->element_type(), algo); e.failure()) return e;
  JV_TRY({
    Geometry g = Make(x.dimensions(), y->dimensions(), kh, kw, sh, sw, ph0, ph1, pw0, pw1, algo,
                      x.element_type());
    auto f = CachedForward(g, dnnl::prop_kind::forward_inference);
    dnnl::stream s(Engine());
    memory scratch(f->desc.scratchpad_desc(), Engine());
    memory xm(g.Src(), Engine(), x.untyped_data());
    memory ym(g.Dst(), Engine(), y->untyped_data());
    f->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
    FixSpecial(x.untyped_data(), y->untyped_data(), g);
  })
}

// Max pooling for training: x -> y and the workspace (uint8, workspace_desc().get_size() bytes).
ffi::Error PoolForwardTrainingImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y,
                                   ffi::Result<ffi::AnyBuffer> ws, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0,
                                   int64_t pw1, int64_t algo) {
  if (auto e = CheckArgs(x.element_type(), y->element_type(), algo); e.failure()) return e;
  if (algo != 0) return Invalid("only max pooling has a workspace");
  JV_TRY({
    Geometry g = Make(x.dimensions(), y->dimensions(), kh, kw, sh, sw, ph0, ph1, pw0, pw1, algo,
                      x.element_type());
    auto f = CachedForward(g, dnnl::prop_kind::forward_training);
    if (f->desc.workspace_desc().get_size() != ws->size_bytes())
      return Invalid("workspace of " + std::to_string(ws->size_bytes()) + " bytes, oneDNN needs " +
                     std::to_string(f->desc.workspace_desc().get_size()));
    dnnl::stream s(Engine());
    memory scratch(f->desc.scratchpad_desc(), Engine());
    memory xm(g.Src(), Engine(), x.untyped_data());
    memory ym(g.Dst(), Engine(), y->untyped_data());
    memory wm(f->desc.workspace_desc(), Engine(), ws->untyped_data());
    f->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_WORKSPACE, wm},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
    FixSpecial(x.untyped_data(), y->untyped_data(), g);
  })
}

// Max pooling's backward: dy (N, OH, OW, C), workspace from PoolForwardTraining -> dx (N, H, W, C).
ffi::Error PoolMaxBackwardImpl(ffi::AnyBuffer dy, ffi::AnyBuffer ws,
                               ffi::Result<ffi::AnyBuffer> dx, int64_t kh, int64_t kw, int64_t sh,
                               int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0, int64_t pw1,
                               int64_t algo) {
  if (auto e = CheckArgs(dy.element_type(), dx->element_type(), algo); e.failure()) return e;
  if (algo != 0) return Invalid("only max pooling has a workspace");
  JV_TRY({
    Geometry g = Make(dx->dimensions(), dy.dimensions(), kh, kw, sh, sw, ph0, ph1, pw0, pw1,
                      algo, dy.element_type());
    auto b = CachedBackward(g);
    if (b->desc.workspace_desc().get_size() != ws.size_bytes())
      return Invalid("workspace of " + std::to_string(ws.size_bytes()) + " bytes, oneDNN needs " +
                     std::to_string(b->desc.workspace_desc().get_size()));
    dnnl::stream s(Engine());
    memory scratch(b->desc.scratchpad_desc(), Engine());
    memory dym(g.Dst(), Engine(), dy.untyped_data());
    memory dxm(g.Src(), Engine(), dx->untyped_data());
    memory wm(b->desc.workspace_desc(), Engine(), ws.untyped_data());
    b->prim.execute(s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_SRC, dxm},
                        {DNNL_ARG_WORKSPACE, wm}, {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

// Average pooling's backward: dy (N, OH, OW, C) -> dx (N, H, W, C).
ffi::Error PoolAvgBackwardImpl(ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx, int64_t kh,
                               int64_t kw, int64_t sh, int64_t sw, int64_t ph0, int64_t ph1,
                               int64_t pw0, int64_t pw1, int64_t algo) {
  if (auto e = CheckArgs(dy.element_type(), dx->element_type(), algo); e.failure()) return e;
  if (algo == 0) return Invalid("max pooling's backward needs the workspace");
  JV_TRY({
    Geometry g = Make(dx->dimensions(), dy.dimensions(), kh, kw, sh, sw, ph0, ph1, pw0, pw1,
                      algo, dy.element_type());
    auto b = CachedBackward(g);
    dnnl::stream s(Engine());
    memory scratch(b->desc.scratchpad_desc(), Engine());
    memory dym(g.Dst(), Engine(), dy.untyped_data());
    memory dxm(g.Src(), Engine(), dx->untyped_data());
    b->prim.execute(s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_SRC, dxm},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

}  // namespace

#define JV_ATTRS                                                                          \
  .Attr<int64_t>("kh").Attr<int64_t>("kw").Attr<int64_t>("sh").Attr<int64_t>("sw")        \
      .Attr<int64_t>("ph0").Attr<int64_t>("ph1").Attr<int64_t>("pw0").Attr<int64_t>("pw1") \
      .Attr<int64_t>("algo")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvPoolForward, PoolForwardImpl,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  JV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvPoolForwardTraining, PoolForwardTrainingImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvPoolMaxBackward, PoolMaxBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvPoolAvgBackward, PoolAvgBackwardImpl,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>()
                                  JV_ATTRS);
