// What every oneDNN handler library of jaxvision shares (onednn_conv.cc, onednn_pool.cc,
// onednn_matmul.cc): the CPU engine, the dtype mapping, the per-execution scratchpad attribute,
// the per-shape primitive cache and the error translation. Each library includes it once, inside
// nothing else; onednn_build.py hashes it with the source, so a change rebuilds every library.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

bool Supported(ffi::DataType d) { return d == ffi::DataType::F32 || d == ffi::DataType::BF16; }

memory::data_type TypeOf(ffi::DataType d) {
  return d == ffi::DataType::BF16 ? memory::data_type::bf16 : memory::data_type::f32;
}

// Each execution gets its own scratchpad (user mode): a primitive is then safe to run from
// several threads at once (e.g. a threaded inference server); with the library's scratchpad,
// concurrent executions of one primitive share it and return garbage.
dnnl::primitive_attr Attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

template <typename Desc, typename Prim>
struct Entry {
  Desc desc;
  Prim prim;
};

// The primitive of ``key``, created by ``make()`` (its primitive_desc) on first use and kept.
template <typename E, typename Make>
std::shared_ptr<E> Cached(const std::string& key, Make make) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::shared_ptr<E>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto desc = make();
  auto entry = std::make_shared<E>(E{desc, decltype(E::prim)(desc)});
  cache.emplace(key, entry);
  return entry;
}

}  // namespace

// A handler body whose oneDNN or C++ exceptions become FFI errors (never an abort). Variadic: a
// body's unparenthesized commas (brace initializers) would otherwise split it into arguments.
#define JV_TRY(...)                                                                       \
  try {                                                                                   \
    __VA_ARGS__                                                                           \
  } catch (const dnnl::error& e) {                                                        \
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());     \
  } catch (const std::exception& e) {                                                     \
    return ffi::Error(ffi::ErrorCode::kInternal, e.what());                               \
  }                                                                                       \
  return ffi::Error::Success();
