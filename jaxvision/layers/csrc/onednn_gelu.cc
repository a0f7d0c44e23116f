// GELU, y = x * Phi(x), forward and backward, as XLA FFI handlers for
// jaxvision.layers.onednn_gelu: oneDNN's eltwise primitive (algorithms gelu_erf, the exact form,
// and gelu_tanh, the tanh approximation), the kernel behind PyTorch's CPU nn.GELU.
//   Forward  (x)     -> y          attribute approximate: 0 = erf, 1 = tanh
//   Backward (x, dy) -> dx = dy * GELU'(x)
// x, y, dy, dx: one shape (any rank, row-major) and one dtype, float32 or bfloat16 (bf16 is
// computed in float32 inside oneDNN and rounded once).
#include <cstdio>

#include "onednn_common.h"

namespace {

using Fwd = Entry<dnnl::eltwise_forward::primitive_desc, dnnl::eltwise_forward>;
using Bwd = Entry<dnnl::eltwise_backward::primitive_desc, dnnl::eltwise_backward>;

struct Problem {
  int64_t size;
  memory::data_type type;
  dnnl::algorithm algo;

  std::string Key(const char* what) const {
    char b[96];
    std::snprintf(b, sizeof b, "%s|%lld|%d|%d", what, (long long)size, static_cast<int>(type),
                  static_cast<int>(algo));
    return b;
  }
  // The buffer as one flat vector: elementwise, so the shape does not matter.
  memory::desc Md() const { return {{size}, type, memory::format_tag::a}; }
  dnnl::eltwise_forward::primitive_desc FwdDesc() const {
    return dnnl::eltwise_forward::primitive_desc(Engine(), dnnl::prop_kind::forward_training, algo,
                                                 Md(), Md(), 0.0f, 0.0f, Attr());
  }
};

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxvision oneDNN GELU: " + what);
}

ffi::Error Describe(std::initializer_list<ffi::AnyBuffer> buffers, int64_t approximate,
                    Problem* out) {
  const ffi::AnyBuffer& x = *buffers.begin();
  if (!Supported(x.element_type())) return Invalid("x must be float32 or bfloat16");
  for (const auto& b : buffers)
    if (b.element_type() != x.element_type() || b.element_count() != x.element_count())
      return Invalid("every operand must have x's shape and dtype");
  *out = Problem{static_cast<int64_t>(x.element_count()), TypeOf(x.element_type()),
                 approximate ? dnnl::algorithm::eltwise_gelu_tanh
                             : dnnl::algorithm::eltwise_gelu_erf};
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> y, int64_t approximate) {
  Problem p;
  if (auto err = Describe({x, *y}, approximate, &p); err.failure()) return err;
  if (p.size == 0) return ffi::Error::Success();
  JV_TRY({
    auto e = Cached<Fwd>(p.Key("fwd"), [&] { return p.FwdDesc(); });
    dnnl::stream s(Engine());
    memory scratch(e->desc.scratchpad_desc(), Engine());
    e->prim.execute(s, {{DNNL_ARG_SRC, memory(p.Md(), Engine(), x.untyped_data())},
                        {DNNL_ARG_DST, memory(p.Md(), Engine(), y->untyped_data())},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dx,
                        int64_t approximate) {
  Problem p;
  if (auto err = Describe({x, dy, *dx}, approximate, &p); err.failure()) return err;
  if (p.size == 0) return ffi::Error::Success();
  JV_TRY({
    auto e = Cached<Bwd>(p.Key("bwd"), [&] {
      return dnnl::eltwise_backward::primitive_desc(Engine(), p.algo, p.Md(), p.Md(), p.Md(),
                                                    0.0f, 0.0f, p.FwdDesc(), Attr());
    });
    dnnl::stream s(Engine());
    memory scratch(e->desc.scratchpad_desc(), Engine());
    e->prim.execute(s, {{DNNL_ARG_SRC, memory(p.Md(), Engine(), x.untyped_data())},
                        {DNNL_ARG_DIFF_DST, memory(p.Md(), Engine(), dy.untyped_data())},
                        {DNNL_ARG_DIFF_SRC, memory(p.Md(), Engine(), dx->untyped_data())},
                        {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  })
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvGeluForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("approximate"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvGeluBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("approximate"));
