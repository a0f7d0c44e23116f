// oneDNN convolutions (forward, input gradient, weight gradient) as XLA FFI handlers, for
// jaxvision.layers.onednn_conv. Layouts are the ones jaxvision uses everywhere: activations NHWC,
// kernels HWIO (grouped: HWIO with O = groups * O/groups, i.e. oneDNN's "hwigo"). oneDNN picks
// its own (blocked) kernel layout ("any"); the kernel is reordered into it on each call, which is
// small next to the convolution. Primitives are created once per shape and kept.
//
// Attributes (all int64): sh, sw strides; ph0, ph1, pw0, pw1 explicit non-negative padding;
// dh, dw dilation (1 = none, XLA's convention; oneDNN counts from 0); groups.
#include <cstdio>

#include "onednn_common.h"

namespace {

struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, groups;
  int64_t sh, sw, ph0, ph1, pw0, pw1, dh, dw;
  memory::data_type type;

  std::string Key(int kind, memory::data_type weight_type) const {
    char b[320];
    std::snprintf(b, sizeof b, "%d/%d/%d|%lld,%lld,%lld,%lld|%lld,%lld,%lld|%lld,%lld,%lld|%lld,%lld,"
                  "%lld,%lld,%lld,%lld,%lld,%lld", kind, static_cast<int>(type),
                  static_cast<int>(weight_type), (long long)n, (long long)h, (long long)w,
                  (long long)c, (long long)kh, (long long)kw, (long long)o, (long long)oh,
                  (long long)ow, (long long)groups, (long long)sh, (long long)sw,
                  (long long)ph0, (long long)ph1, (long long)pw0, (long long)pw1,
                  (long long)dh, (long long)dw);
    return b;
  }
  memory::desc Src() const { return {{n, c, h, w}, type, memory::format_tag::nhwc}; }
  memory::desc Dst() const { return {{n, o, oh, ow}, type, memory::format_tag::nhwc}; }
  memory::desc Weights(memory::data_type t, memory::format_tag tag) const {
    if (groups == 1) return {{o, c, kh, kw}, t, tag == memory::format_tag::any ? tag : memory::format_tag::hwio};
    return {{groups, o / groups, c / groups, kh, kw}, t,
            tag == memory::format_tag::any ? tag : memory::format_tag::hwigo};
  }
  memory::desc WeightsHwio(memory::data_type t) const { return Weights(t, memory::format_tag::hwio); }
  memory::desc WeightsAny(memory::data_type t) const { return Weights(t, memory::format_tag::any); }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims Dilation() const { return {dh - 1, dw - 1}; }
  memory::dims PadLow() const { return {ph0, pw0}; }
  memory::dims PadHigh() const { return {ph1, pw1}; }
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
          g.Src(), g.WeightsAny(g.type), g.Dst(), g.Strides(), g.Dilation(), g.PadLow(),
          g.PadHigh(), Attr()};
}

using Forward = Entry<dnnl::convolution_forward::primitive_desc, dnnl::convolution_forward>;
using BackwardData =
    Entry<dnnl::convolution_backward_data::primitive_desc, dnnl::convolution_backward_data>;
using BackwardWeights =
    Entry<dnnl::convolution_backward_weights::primitive_desc, dnnl::convolution_backward_weights>;

// The kernel in the layout the primitive wants (a reorder when that is not plain HWIO).
memory KernelFor(const memory::desc& wanted, memory& plain, dnnl::stream& s) {
  if (wanted == plain.get_desc()) return plain;
  memory blocked(wanted, Engine());
  dnnl::reorder(plain, blocked).execute(s, plain, blocked);
  return blocked;
}

Geometry Make(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k, ffi::Span<const int64_t> y,
              int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0, int64_t pw1,
              int64_t dh, int64_t dw, int64_t groups, ffi::DataType type) {
  return Geometry{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], groups,
                  sh, sw, ph0, ph1, pw0, pw1, dh, dw, TypeOf(type)};
}

ffi::Error Invalid(const char* what) { return ffi::Error(ffi::ErrorCode::kInvalidArgument, what); }

ffi::Error ConvForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> y,
                           int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0,
                           int64_t pw1, int64_t dh, int64_t dw, int64_t groups) {
  if (!Supported(x.element_type()) || x.element_type() != k.element_type())
    return Invalid("jaxvision oneDNN convolution: x and kernel must both be float32 or bfloat16");
  JV_TRY({
    Geometry g = Make(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, ph0, ph1, pw0,
                      pw1, dh, dw, groups, x.element_type());
    auto f = Cached<Forward>(g.Key(0, g.type), [&] { return ForwardDesc(g); });
    dnnl::stream s(Engine());
    memory scratch(f->desc.scratchpad_desc(), Engine());
    memory xm(g.Src(), Engine(), x.untyped_data());
    memory km(g.WeightsHwio(g.type), Engine(), k.untyped_data());
    memory ym(g.Dst(), Engine(), y->untyped_data());
    memory kb = KernelFor(f->desc.weights_desc(), km, s);
    f->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, kb}, {DNNL_ARG_DST, ym},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

// dy (N, OH, OW, O), kernel (KH, KW, C / groups, O) -> dx (N, H, W, C)
ffi::Error ConvInputGradImpl(ffi::AnyBuffer dy, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> dx,
                             int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0,
                             int64_t pw1, int64_t dh, int64_t dw, int64_t groups) {
  if (!Supported(dy.element_type()) || dy.element_type() != k.element_type())
    return Invalid("jaxvision oneDNN convolution: dy and kernel must both be float32 or bfloat16");
  JV_TRY({
    Geometry g = Make(dx->dimensions(), k.dimensions(), dy.dimensions(), sh, sw, ph0, ph1, pw0,
                      pw1, dh, dw, groups, dy.element_type());
    auto f = Cached<BackwardData>(g.Key(1, g.type), [&] {
      return dnnl::convolution_backward_data::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.WeightsAny(g.type), g.Dst(),
          g.Strides(), g.Dilation(), g.PadLow(), g.PadHigh(), ForwardDesc(g), Attr());
    });
    dnnl::stream s(Engine());
    memory scratch(f->desc.scratchpad_desc(), Engine());
    memory dym(g.Dst(), Engine(), dy.untyped_data());
    memory km(g.WeightsHwio(g.type), Engine(), k.untyped_data());
    memory dxm(g.Src(), Engine(), dx->untyped_data());
    memory kb = KernelFor(f->desc.weights_desc(), km, s);
    f->prim.execute(s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, kb}, {DNNL_ARG_DIFF_SRC, dxm},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

// x (N, H, W, C), dy (N, OH, OW, O) -> dk (KH, KW, C / groups, O) in dk's dtype (f32 or bf16)
ffi::Error ConvWeightGradImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dk,
                              int64_t sh, int64_t sw, int64_t ph0, int64_t ph1, int64_t pw0,
                              int64_t pw1, int64_t dh, int64_t dw, int64_t groups) {
  if (!Supported(x.element_type()) || x.element_type() != dy.element_type() ||
      !Supported(dk->element_type()))
    return Invalid("jaxvision oneDNN convolution: x and dy must both be float32 or bfloat16");
  JV_TRY({
    Geometry g = Make(x.dimensions(), dk->dimensions(), dy.dimensions(), sh, sw, ph0, ph1, pw0,
                      pw1, dh, dw, groups, x.element_type());
    memory::data_type kt = TypeOf(dk->element_type());
    auto f = Cached<BackwardWeights>(g.Key(2, kt), [&] {
      return dnnl::convolution_backward_weights::primitive_desc(
          Engine(), dnnl::algorithm::convolution_direct, g.Src(), g.WeightsAny(kt), g.Dst(),
          g.Strides(), g.Dilation(), g.PadLow(), g.PadHigh(), ForwardDesc(g), Attr());
    });
    dnnl::stream s(Engine());
    memory scratch(f->desc.scratchpad_desc(), Engine());
    memory xm(g.Src(), Engine(), x.untyped_data());
    memory dym(g.Dst(), Engine(), dy.untyped_data());
    memory dkm(g.WeightsHwio(kt), Engine(), dk->untyped_data());
    if (f->desc.diff_weights_desc() == dkm.get_desc()) {
      f->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dkm},
                          {DNNL_ARG_SCRATCHPAD, scratch}});
    } else {
      memory blocked(f->desc.diff_weights_desc(), Engine());
      f->prim.execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, blocked},
                          {DNNL_ARG_SCRATCHPAD, scratch}});
      dnnl::reorder(blocked, dkm).execute(s, blocked, dkm);
    }
    s.wait();
  })
}

}  // namespace

#define JV_BIND                                                                             \
  ffi::Ffi::Bind()                                                                          \
      .Arg<ffi::AnyBuffer>()                                                                \
      .Arg<ffi::AnyBuffer>()                                                                \
      .Ret<ffi::AnyBuffer>()                                                                \
      .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("ph0").Attr<int64_t>("ph1")    \
      .Attr<int64_t>("pw0").Attr<int64_t>("pw1").Attr<int64_t>("dh").Attr<int64_t>("dw")    \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvConvForward, ConvForwardImpl, JV_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvConvInputGrad, ConvInputGradImpl, JV_BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(JvConvWeightGrad, ConvWeightGradImpl, JV_BIND);
