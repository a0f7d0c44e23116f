// Layer normalization over the last axis, forward and backward, as XLA FFI handlers for
// jaxvision.layers.onednn_layer_norm: oneDNN's layer_normalization primitive (one pass each way,
// the kernel family of PyTorch's CPU native_layer_norm), with a scale and a shift.
//   Forward  (x, scale, shift)              -> y, mean, variance
//   Backward (x, mean, variance, scale, dy) -> dx, dscale, dshift
// x, y, dy, dx: float32, any rank, row-major (R rows of C = the last dimension); scale, shift,
// dscale, dshift: float32 (C,); mean, variance: float32 (R,), the biased variance of each row.
// y = (x - mean) / sqrt(variance + epsilon) * scale + shift (attribute epsilon, float32).
#include <cstdio>

#include "onednn_common.h"

namespace {

using Fwd = Entry<dnnl::layer_normalization_forward::primitive_desc,
                  dnnl::layer_normalization_forward>;
using Bwd = Entry<dnnl::layer_normalization_backward::primitive_desc,
                  dnnl::layer_normalization_backward>;

struct Problem {
  int64_t rows, channels;
  float epsilon;

  std::string Key(const char* what) const {
    char b[96];
    std::snprintf(b, sizeof b, "%s|%lld|%lld|%.9g", what, (long long)rows, (long long)channels,
                  epsilon);
    return b;
  }
  memory::desc X() const { return {{rows, channels}, memory::data_type::f32, memory::format_tag::ab}; }
  memory::desc Stat() const { return {{rows}, memory::data_type::f32, memory::format_tag::a}; }
  memory::desc Param() const { return {{channels}, memory::data_type::f32, memory::format_tag::a}; }
  static dnnl::normalization_flags Flags() {
    return dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  }
  dnnl::layer_normalization_forward::primitive_desc FwdDesc() const {
    return {Engine(), dnnl::prop_kind::forward_training, X(), X(), Stat(), epsilon, Flags(),
            Attr()};
  }
  memory M(const memory::desc& d, void* data) const { return memory(d, Engine(), data); }
};

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxvision oneDNN LayerNorm: " + what);
}

// The problem of x (R, C) with its per-row and per-channel operands checked.
ffi::Error Describe(const ffi::AnyBuffer& x, std::initializer_list<const ffi::AnyBuffer*> same,
                    std::initializer_list<const ffi::AnyBuffer*> per_row,
                    std::initializer_list<const ffi::AnyBuffer*> per_channel, float epsilon,
                    Problem* p) {
  auto dims = x.dimensions();
  if (dims.size() < 1 || x.element_type() != ffi::DataType::F32)
    return Invalid("x must be float32 with at least one dimension");
  int64_t c = dims[dims.size() - 1];
  if (c <= 0 || x.element_count() == 0) return Invalid("x must not be empty");
  *p = Problem{int64_t(x.element_count()) / c, c, epsilon};
  for (auto b : same)
    if (b->element_type() != ffi::DataType::F32 || b->element_count() != x.element_count())
      return Invalid("y, dy and dx must have x's shape and dtype");
  for (auto b : per_row)
    if (b->element_type() != ffi::DataType::F32 || int64_t(b->element_count()) != p->rows)
      return Invalid("mean and variance must be float32, one value per row of x");
  for (auto b : per_channel)
    if (b->element_type() != ffi::DataType::F32 || int64_t(b->element_count()) != c)
      return Invalid("scale, shift and their gradients must be float32 (C,)");
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer scale, ffi::AnyBuffer shift,
                       ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> mean,
                       ffi::Result<ffi::AnyBuffer> variance, float epsilon) {
  Problem p;
  if (auto err = Describe(x, {&*y}, {&*mean, &*variance}, {&scale, &shift}, epsilon, &p);
      err.failure())
    return err;
  JV_TRY({
    auto e = Cached<Fwd>(p.Key("fwd"), [&] { return p.FwdDesc(); });
    dnnl::stream s(Engine());
    memory scratch(e->desc.scratchpad_desc(), Engine());
    e->prim.execute(s, {{DNNL_ARG_SRC, p.M(p.X(), x.untyped_data())},
                        {DNNL_ARG_DST, p.M(p.X(), y->untyped_data())},
                        {DNNL_ARG_MEAN, p.M(p.Stat(), mean->untyped_data())},
                        {DNNL_ARG_VARIANCE, p.M(p.Stat(), variance->untyped_data())},
                        {DNNL_ARG_SCALE, p.M(p.Param(), scale.untyped_data())},
                        {DNNL_ARG_SHIFT, p.M(p.Param(), shift.untyped_data())},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer mean, ffi::AnyBuffer variance,
                        ffi::AnyBuffer scale, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Result<ffi::AnyBuffer> dscale, ffi::Result<ffi::AnyBuffer> dshift,
                        float epsilon) {
  Problem p;
  if (auto err = Describe(x, {&dy, &*dx}, {&mean, &variance}, {&scale, &*dscale, &*dshift},
                          epsilon, &p);
      err.failure())
    return err;
  JV_TRY({
    auto e = Cached<Bwd>(p.Key("bwd"), [&] {
      return dnnl::layer_normalization_backward::primitive_desc(
          Engine(), dnnl::prop_kind::backward, p.X(), p.X(), p.X(), p.Stat(), epsilon,
          Problem::Flags(), p.FwdDesc(), Attr());
    });
    dnnl::stream s(Engine());
    memory scratch(e->desc.scratchpad_desc(), Engine());
    // oneDNN's backward counts the shift among its inputs (it does not read it): the scale's
    // buffer stands in, which has its descriptor.
    e->prim.execute(s, {{DNNL_ARG_SRC, p.M(p.X(), x.untyped_data())},
                        {DNNL_ARG_DIFF_DST, p.M(p.X(), dy.untyped_data())},
                        {DNNL_ARG_MEAN, p.M(p.Stat(), mean.untyped_data())},
                        {DNNL_ARG_VARIANCE, p.M(p.Stat(), variance.untyped_data())},
                        {DNNL_ARG_SCALE, p.M(p.Param(), scale.untyped_data())},
                        {DNNL_ARG_SHIFT, p.M(p.Param(), scale.untyped_data())},
                        {DNNL_ARG_DIFF_SRC, p.M(p.X(), dx->untyped_data())},
                        {DNNL_ARG_DIFF_SCALE, p.M(p.Param(), dscale->untyped_data())},
                        {DNNL_ARG_DIFF_SHIFT, p.M(p.Param(), dshift->untyped_data())},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvLayerNormForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvLayerNormBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<float>("epsilon"));
