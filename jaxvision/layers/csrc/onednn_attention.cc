// Scaled dot-product attention, softmax(s Q K^T) V with s = 1/sqrt(D), forward and backward, as
// XLA FFI handlers for jaxvision.layers.onednn_attention: oneDNN's batched matmul and softmax
// primitives, the kernels behind PyTorch's CPU attention and Linear layers.
//
// Q, K, V and the output are (N, T, H, D) row-major, the layout the Dense projections produce:
// each is read or written as (N, H, T, D) through strides, so no head transposes are copied. The
// probabilities P are (N, H, T, T) float32 (softmax in float32, as jaxvision's other attention
// forms). bf16 inputs: every product is bf16 x bf16 with float32 accumulation inside oneDNN; P
// and dS are rounded to bf16 once (into the `*_low` buffers) before they enter a product, as
// jaxvision.layers.attention.float32_accumulating_attention does. For float32 inputs those
// buffers are unused (the Python side passes 0-element ones).
//
// Forward  (q, k, v)            -> o, p (f32), p_low
//   S = s Q K^T -> p;  p = softmax(p) in place;  p_low = bf16(p);  O = P V
// Backward (q, k, v, p, p_low, do) -> dq, dk, dv, ds (f32 scratch), ds_low (scratch)
//   dV = P^T dO;  dP = dO V^T -> ds;  ds = P * (dP - rowsum(P * dP)) in place (softmax backward);
//   ds_low = bf16(ds);  dQ = s dS K;  dK = s dS^T Q
#include <cmath>
#include <cstdio>

#include "onednn_common.h"

namespace {

using Matmul = Entry<dnnl::matmul::primitive_desc, dnnl::matmul>;
using SoftmaxFwd = Entry<dnnl::softmax_forward::primitive_desc, dnnl::softmax_forward>;
using SoftmaxBwd = Entry<dnnl::softmax_backward::primitive_desc, dnnl::softmax_backward>;
using Reorder = Entry<dnnl::reorder::primitive_desc, dnnl::reorder>;

using dt = memory::data_type;

struct Dims {
  int64_t n, t, h, d;
  dt in;

  std::string Key(const char* what) const {
    char b[160];
    std::snprintf(b, sizeof b, "%s|%lld,%lld,%lld,%lld|%d", what, (long long)n, (long long)t,
                  (long long)h, (long long)d, static_cast<int>(in));
    return b;
  }
  bool low() const { return in != dt::f32; }
  // An (N, T, H, D) buffer as (N, H, T, D), or transposed as (N, H, D, T).
  memory::desc Heads(dt type) const { return {{n, h, t, d}, type, {t * h * d, d, h * d, 1}}; }
  memory::desc HeadsT(dt type) const { return {{n, h, d, t}, type, {t * h * d, d, 1, h * d}}; }
  // An (N, H, T, T) buffer as itself, or transposed in its last two axes.
  memory::desc Scores(dt type) const { return {{n, h, t, t}, type, {h * t * t, t * t, t, 1}}; }
  memory::desc ScoresT(dt type) const { return {{n, h, t, t}, type, {h * t * t, t * t, 1, t}}; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(d)); }
};

dnnl::memory Mem(const memory::desc& md, void* data) { return memory(md, Engine(), data); }

// dst = src . wei (times `scale` when it is not 1), all three possibly strided.
void RunMatmul(dnnl::stream& s, const std::string& key, const memory::desc& src, void* src_data,
               const memory::desc& wei, void* wei_data, const memory::desc& dst, void* dst_data,
               float scale) {
  auto e = Cached<Matmul>(key, [&] {
    auto attr = Attr();
    if (scale != 1.0f) {
      dnnl::post_ops ops;
      ops.append_eltwise(dnnl::algorithm::eltwise_linear, scale, 0.0f);
      attr.set_post_ops(ops);
    }
    return dnnl::matmul::primitive_desc(Engine(), src, wei, dst, attr);
  });
  memory scratch(e->desc.scratchpad_desc(), Engine());
  e->prim.execute(s, {{DNNL_ARG_SRC, Mem(src, src_data)},
                      {DNNL_ARG_WEIGHTS, Mem(wei, wei_data)},
                      {DNNL_ARG_DST, Mem(dst, dst_data)},
                      {DNNL_ARG_SCRATCHPAD, scratch}});
}

// float32 (N, H, T, T) -> the input dtype, for the next bf16 product.
void RunRound(dnnl::stream& s, const Dims& p, void* from, void* to) {
  auto src = p.Scores(dt::f32), dst = p.Scores(p.in);
  auto e = Cached<Reorder>(p.Key("round"), [&] {
    return dnnl::reorder::primitive_desc(Engine(), src, Engine(), dst, Attr());
  });
  memory scratch(e->desc.scratchpad_desc(), Engine());
  e->prim.execute(s, {{DNNL_ARG_FROM, Mem(src, from)},
                      {DNNL_ARG_TO, Mem(dst, to)},
                      {DNNL_ARG_SCRATCHPAD, scratch}});
}

dnnl::softmax_forward::primitive_desc SoftmaxDesc(const Dims& p) {
  auto md = p.Scores(dt::f32);
  return dnnl::softmax_forward::primitive_desc(Engine(), dnnl::prop_kind::forward_training,
                                               dnnl::algorithm::softmax_accurate, md, md, 3,
                                               Attr());
}

ffi::Error Invalid(const std::string& what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jaxvision oneDNN attention: " + what);
}

// The problem of q (into *out), checked against the other (N, T, H, D) operands.
ffi::Error Check(ffi::AnyBuffer q, std::initializer_list<ffi::AnyBuffer> same, Dims* out) {
  auto qd = q.dimensions();
  if (!Supported(q.element_type())) return Invalid("q, k, v must be float32 or bfloat16");
  if (qd.size() != 4) return Invalid("q, k, v must be (N, T, H, D)");
  for (const auto& b : same) {
    if (b.element_type() != q.element_type()) return Invalid("q, k, v must have one dtype");
    auto bd = b.dimensions();
    if (bd.size() != 4 || bd[0] != qd[0] || bd[1] != qd[1] || bd[2] != qd[2] || bd[3] != qd[3])
      return Invalid("q, k, v (and the output cotangent) must have one shape");
  }
  *out = Dims{qd[0], qd[1], qd[2], qd[3], TypeOf(q.element_type())};
  return ffi::Error::Success();
}

ffi::Error CheckScores(const Dims& p, ffi::AnyBuffer scores, ffi::DataType type) {
  auto sd = scores.dimensions();
  if (scores.element_type() != type || sd.size() != 4 || sd[0] != p.n || sd[1] != p.h ||
      sd[2] != p.t || sd[3] != p.t)
    return Invalid("probability buffers must be (N, H, T, T)");
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::AnyBuffer q, ffi::AnyBuffer k, ffi::AnyBuffer v,
                       ffi::Result<ffi::AnyBuffer> o, ffi::Result<ffi::AnyBuffer> probs,
                       ffi::Result<ffi::AnyBuffer> probs_low) {
  Dims p;
  if (auto err = Check(q, {k, v, *o}, &p); err.failure()) return err;
  if (auto err = CheckScores(p, *probs, ffi::DataType::F32); err.failure()) return err;
  if (p.low())
    if (auto err = CheckScores(p, *probs_low, q.element_type()); err.failure()) return err;
  JV_TRY({
    dnnl::stream s(Engine());
    void* pf = probs->untyped_data();
    RunMatmul(s, p.Key("qk"), p.Heads(p.in), q.untyped_data(), p.HeadsT(p.in), k.untyped_data(),
              p.Scores(dt::f32), pf, p.scale());
    auto sm = Cached<SoftmaxFwd>(p.Key("softmax"), [&] { return SoftmaxDesc(p); });
    memory scratch(sm->desc.scratchpad_desc(), Engine());
    memory pm = Mem(p.Scores(dt::f32), pf);
    sm->prim.execute(s, {{DNNL_ARG_SRC, pm}, {DNNL_ARG_DST, pm}, {DNNL_ARG_SCRATCHPAD, scratch}});
    void* pv = pf;
    if (p.low()) {
      RunRound(s, p, pf, probs_low->untyped_data());
      pv = probs_low->untyped_data();
    }
    RunMatmul(s, p.Key("pv"), p.Scores(p.in), pv, p.Heads(p.in), v.untyped_data(),
              p.Heads(p.in), o->untyped_data(), 1.0f);
    s.wait();
  })
}

ffi::Error BackwardImpl(ffi::AnyBuffer q, ffi::AnyBuffer k, ffi::AnyBuffer v,
                        ffi::AnyBuffer probs, ffi::AnyBuffer probs_low, ffi::AnyBuffer dout,
                        ffi::Result<ffi::AnyBuffer> dq, ffi::Result<ffi::AnyBuffer> dk,
                        ffi::Result<ffi::AnyBuffer> dv, ffi::Result<ffi::AnyBuffer> ds,
                        ffi::Result<ffi::AnyBuffer> ds_low) {
  Dims p;
  if (auto err = Check(q, {k, v, dout, *dq, *dk, *dv}, &p); err.failure()) return err;
  if (auto err = CheckScores(p, probs, ffi::DataType::F32); err.failure()) return err;
  if (auto err = CheckScores(p, *ds, ffi::DataType::F32); err.failure()) return err;
  if (p.low()) {
    if (auto err = CheckScores(p, probs_low, q.element_type()); err.failure()) return err;
    if (auto err = CheckScores(p, *ds_low, q.element_type()); err.failure()) return err;
  }
  JV_TRY({
    dnnl::stream s(Engine());
    void* pl = p.low() ? probs_low.untyped_data() : probs.untyped_data();
    // dV = P^T dO
    RunMatmul(s, p.Key("dv"), p.ScoresT(p.in), pl, p.Heads(p.in), dout.untyped_data(),
              p.Heads(p.in), dv->untyped_data(), 1.0f);
    // dP = dO V^T, then the softmax backward in place: dS = P * (dP - rowsum(P * dP)).
    void* dsf = ds->untyped_data();
    RunMatmul(s, p.Key("dp"), p.Heads(p.in), dout.untyped_data(), p.HeadsT(p.in),
              v.untyped_data(), p.Scores(dt::f32), dsf, 1.0f);
    auto md = p.Scores(dt::f32);
    auto sb = Cached<SoftmaxBwd>(p.Key("softmax_bwd"), [&] {
      return dnnl::softmax_backward::primitive_desc(Engine(), dnnl::algorithm::softmax_accurate,
                                                    md, md, md, 3, SoftmaxDesc(p), Attr());
    });
    memory scratch(sb->desc.scratchpad_desc(), Engine());
    memory dsm = Mem(md, dsf);
    sb->prim.execute(s, {{DNNL_ARG_DST, Mem(md, probs.untyped_data())},
                         {DNNL_ARG_DIFF_DST, dsm},
                         {DNNL_ARG_DIFF_SRC, dsm},
                         {DNNL_ARG_SCRATCHPAD, scratch}});
    void* dsl = dsf;
    if (p.low()) {
      RunRound(s, p, dsf, ds_low->untyped_data());
      dsl = ds_low->untyped_data();
    }
    // dQ = s dS K, dK = s dS^T Q
    RunMatmul(s, p.Key("dq"), p.Scores(p.in), dsl, p.Heads(p.in), k.untyped_data(),
              p.Heads(p.in), dq->untyped_data(), p.scale());
    RunMatmul(s, p.Key("dk"), p.ScoresT(p.in), dsl, p.Heads(p.in), q.untyped_data(),
              p.Heads(p.in), dk->untyped_data(), p.scale());
    s.wait();
  })
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvAttentionForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JvAttentionBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
