// oneDNN matrix products C = op(A) . op(B) as an XLA FFI handler, for
// jaxvision.layers.onednn_matmul. op(X) is X or its transpose (attributes ta, tb, int64 0/1): a
// transposed operand is described to oneDNN by strides (no copy), which is what the backward
// passes need (dA = dC . B^T, dB = A^T . dC). Shapes, all row-major:
//   A (M, K), or (K, M) when ta;  B (K, N), or (N, K) when tb;  C (M, N).
// A and B are both float32 or both bfloat16; bf16 products accumulate in float32 inside oneDNN.
// C is float32 or bfloat16 (its buffer's dtype; the Python side asks for the input dtype).
// JvMatmulBias: C = A . B + bias (A and B untransposed, bias (N,) in A's dtype, added to the
// float32 accumulator inside the product: the forward pass of a Dense layer in one pass).
// Weights stay in their plain layout: oneDNN's matmul reads them as they are.
// Primitives are created once per (shape, transposes, dtypes) and kept.
#include <cstdio>

#include "onednn_common.h"

namespace {

struct Problem {
  int64_t m, k, n;
  bool ta, tb;
  memory::data_type in, out;
  bool bias = false;

  std::string Key() const {
    char b[160];
    std::snprintf(b, sizeof b, "%lld,%lld,%lld|%d%d|%d,%d|%d", (long long)m, (long long)k,
                  (long long)n, int(ta), int(tb), static_cast<int>(in), static_cast<int>(out),
                  int(bias));
    return b;
  }
  // op(A) as an (M, K) matrix: row-major (M, K), or the row-major (K, M) buffer read by strides.
  memory::desc A() const {
    return {{m, k}, in, ta ? memory::dims{1, m} : memory::dims{k, 1}};
  }
  // op(B) as a (K, N) matrix: row-major (K, N), or the row-major (N, K) buffer read by strides.
  memory::desc B() const {
    return {{k, n}, in, tb ? memory::dims{1, k} : memory::dims{n, 1}};
  }
  memory::desc C() const { return {{m, n}, out, memory::dims{n, 1}}; }
  memory::desc Bias() const { return {{1, n}, in, memory::dims{n, 1}}; }
};

using Matmul = Entry<dnnl::matmul::primitive_desc, dnnl::matmul>;

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxvision oneDNN matmul: " + what);
}

// C = op(A) . op(B) (+ bias when given).
ffi::Error Run(ffi::AnyBuffer a, ffi::AnyBuffer b, const ffi::AnyBuffer* bias,
               ffi::Result<ffi::AnyBuffer> c, int64_t ta, int64_t tb) {
  if (!Supported(a.element_type()) || a.element_type() != b.element_type() ||
      !Supported(c->element_type()))
    return Invalid("A and B must both be float32 or bfloat16, C float32 or bfloat16");
  auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  if (ad.size() != 2 || bd.size() != 2 || cd.size() != 2) return Invalid("operands must be 2-D");
  Problem p{ta ? ad[1] : ad[0], ta ? ad[0] : ad[1], tb ? bd[0] : bd[1], ta != 0, tb != 0,
            TypeOf(a.element_type()), TypeOf(c->element_type()), bias != nullptr};
  if ((tb ? bd[1] : bd[0]) != p.k || cd[0] != p.m || cd[1] != p.n)
    return Invalid("shapes do not match C = op(A) . op(B)");
  if (bias && (bias->element_type() != a.element_type() || bias->element_count() != size_t(p.n)))
    return Invalid("the bias must be (N,) in A's dtype");
  JV_TRY({
    auto e = Cached<Matmul>(p.Key(), [&] {
      return p.bias ? dnnl::matmul::primitive_desc(Engine(), p.A(), p.B(), p.Bias(), p.C(), Attr())
                    : dnnl::matmul::primitive_desc(Engine(), p.A(), p.B(), p.C(), Attr());
    });
    dnnl::stream s(Engine());
    memory scratch(e->desc.scratchpad_desc(), Engine());
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, memory(p.A(), Engine(), a.untyped_data())},
        {DNNL_ARG_WEIGHTS, memory(p.B(), Engine(), b.untyped_data())},
        {DNNL_ARG_DST, memory(p.C(), Engine(), c->untyped_data())},
        {DNNL_ARG_SCRATCHPAD, scratch}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(p.Bias(), Engine(), bias->untyped_data()));
    e->prim.execute(s, args);
    s.wait();
  })
}

ffi::Error MatmulImpl(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> c,
                      int64_t ta, int64_t tb) {
  return Run(a, b, nullptr, c, ta, tb);
}

ffi::Error MatmulBiasImpl(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::AnyBuffer bias,
                          ffi::Result<ffi::AnyBuffer> c) {
  return Run(a, b, &bias, c, 0, 0);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvMatmul, MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("ta")
                                  .Attr<int64_t>("tb"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvMatmulBias, MatmulBiasImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
