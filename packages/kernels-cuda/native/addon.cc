// The N-API boundary of the CUDA kernels (node-addon-api): argument checks, typed-array views,
// and CUDA failures thrown as JS errors whose message names the failing call. Typed errors are
// made in TypeScript (src/native.ts), which is the only caller.
//
// Built without nvcc (BITNET_HOST_ONLY, compiled by g++), the addon has only the host twins:
// status() says why there is no GPU code, and the device entries throw.
#include <napi.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "kernels.h"
#include "model.h"
#include "tensor_core.cuh"
#include "top_k.cuh"

namespace {

using bitnet_cuda::Status;

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= (double)min) || v != (double)(int64_t)v || v > 9.0e15) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer ≥ " + std::to_string(min));
  }
  return (int64_t)v;
}

template <typename T, napi_typedarray_type Kind>
Napi::TypedArrayOf<T> array_arg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t count) {
  if (i >= info.Length() || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != Kind) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " has the wrong array type");
  }
  auto a = info[i].As<Napi::TypedArrayOf<T>>();
  if (a.ElementLength() != count) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must hold " + std::to_string(count) +
                                                " elements, not " + std::to_string(a.ElementLength()));
  }
  return a;
}

void throw_if(const Napi::Env& env, const Status& s) {
  if (!s.ok()) throw Napi::Error::New(env, s.error);
}

#ifdef BITNET_HOST_ONLY
#ifndef BITNET_HOST_ONLY_REASON
#define BITNET_HOST_ONLY_REASON "no CUDA toolkit at build time"
#endif
// Device entries of a host-only build: a clear error instead of a missing symbol.
const Status kNoDeviceCode{std::string("this CUDA addon was built without GPU code (") + BITNET_HOST_ONLY_REASON + ")"};
}  // namespace
namespace bitnet_cuda {
int runtime_version() { return 0; }
Status devices(int* count) {
  *count = 0;
  return kNoDeviceCode;
}
Status device_info(int, DeviceInfo*) { return kNoDeviceCode; }
Status i2s_linear_device(const uint8_t*, int64_t, int64_t, float, const float*, int64_t, float*, int8_t*, float*,
                         int32_t*) {
  return kNoDeviceCode;
}
Status f16_linear_device(const uint16_t*, int64_t, int64_t, const float*, int64_t, float*) { return kNoDeviceCode; }
Status top_k_device(const float*, int64_t, int64_t, int, int32_t*, float*) { return kNoDeviceCode; }
Status time_i2s_gemv(int64_t, int64_t, int64_t, int, int, double*) { return kNoDeviceCode; }
Status time_copy(int64_t, int, double*) { return kNoDeviceCode; }
Status time_cublas_bf16_gemv(const char*, int64_t, int64_t, int, double*, std::string*) { return kNoDeviceCode; }
std::unique_ptr<Exec> make_cuda_exec(int) { throw ExecError(kNoDeviceCode.error); }
}  // namespace bitnet_cuda
namespace {
using bitnet_cuda::Status;
#endif

// { runtimeVersion, deviceCount, error?, devices: [...] }: never throws, so that a machine
// without a driver or a GPU reads as a reason, not a crash.
Napi::Value Status_(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("runtimeVersion", bitnet_cuda::runtime_version());
#ifdef BITNET_HOST_ONLY
  out.Set("deviceCode", false);
#else
  out.Set("deviceCode", true);
#endif
  int count = 0;
  const Status s = bitnet_cuda::devices(&count);
  out.Set("deviceCount", s.ok() ? count : 0);
  if (!s.ok()) out.Set("error", s.error);
  Napi::Array list = Napi::Array::New(env);
  for (int i = 0; s.ok() && i < count; i++) {
    bitnet_cuda::DeviceInfo d;
    const Status e = bitnet_cuda::device_info(i, &d);
    Napi::Object o = Napi::Object::New(env);
    if (!e.ok()) {
      o.Set("error", e.error);
    } else {
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      o.Set("smCount", d.sm_count);
      o.Set("totalMemoryBytes", (double)d.total_memory);
      o.Set("memoryBusBits", d.memory_bus_bits);
      o.Set("memoryClockKHz", d.memory_clock_khz);
    }
    list.Set(i, o);
  }
  out.Set("devices", list);
  return out;
}

// i2sLinear(codes, rows, cols, wScale, x, tokens, where): where is "device" or "host".
Napi::Value I2sLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = int_arg(info, 1, "rows", 1);
  const int64_t cols = int_arg(info, 2, "cols", 128);
  if (cols % 128 != 0) throw Napi::RangeError::New(env, "cols must be a multiple of 128 (one I2_S block)");
  if (!info[3].IsNumber()) throw Napi::TypeError::New(env, "wScale must be a number");
  const float w_scale = info[3].As<Napi::Number>().FloatValue();
  const int64_t T = int_arg(info, 5, "tokens", 1);
  auto codes = array_arg<uint8_t, napi_uint8_array>(info, 0, "codes", (size_t)(rows * cols / 4));
  auto x = array_arg<float, napi_float32_array>(info, 4, "x", (size_t)(T * cols));
  if (info.Length() < 7 || !info[6].IsString()) throw Napi::TypeError::New(env, "where must be \"device\" or \"host\"");
  const std::string where = info[6].As<Napi::String>();
  auto y = Napi::Float32Array::New(env, (size_t)(T * rows));
  auto q = Napi::Int8Array::New(env, (size_t)(T * cols));
  auto scale = Napi::Float32Array::New(env, (size_t)T);
  auto sum = Napi::Int32Array::New(env, (size_t)T);
  if (where == "host") {
    bitnet_cuda::i2s_linear_host(codes.Data(), rows, cols, w_scale, x.Data(), T, y.Data(), q.Data(), scale.Data(),
                                 sum.Data());
  } else if (where == "device") {
    throw_if(env, bitnet_cuda::i2s_linear_device(codes.Data(), rows, cols, w_scale, x.Data(), T, y.Data(), q.Data(),
                                                 scale.Data(), sum.Data()));
  } else {
    throw Napi::TypeError::New(env, "where must be \"device\" or \"host\"");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("y", y);
  out.Set("q", q);
  out.Set("actScale", scale);
  out.Set("actSum", sum);
  return out;
}

// topK(logits, rows, vocab, k, where) → { ids, values } ([rows × k] each); where is "device"
// or "host". k from 1 to min(vocab, kMaxDeviceTopK).
Napi::Value TopK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = int_arg(info, 1, "rows", 1);
  const int64_t vocab = int_arg(info, 2, "vocab", 1);
  const int64_t k = int_arg(info, 3, "k", 1);
  if (k > vocab || k > bitnet_cuda::kMaxDeviceTopK) {
    throw Napi::RangeError::New(env, "k must be at most the vocabulary (" + std::to_string(vocab) + ") and " +
                                         std::to_string(bitnet_cuda::kMaxDeviceTopK));
  }
  if (vocab > INT32_MAX) throw Napi::RangeError::New(env, "vocab must fit in 32 bits");
  auto logits = array_arg<float, napi_float32_array>(info, 0, "logits", (size_t)(rows * vocab));
  if (info.Length() < 5 || !info[4].IsString()) throw Napi::TypeError::New(env, "where must be \"device\" or \"host\"");
  const std::string where = info[4].As<Napi::String>();
  auto ids = Napi::Int32Array::New(env, (size_t)(rows * k));
  auto values = Napi::Float32Array::New(env, (size_t)(rows * k));
  if (where == "host") {
    bitnet_cuda::top_k_host(logits.Data(), rows, vocab, (int)k, ids.Data(), values.Data());
  } else if (where == "device") {
    throw_if(env, bitnet_cuda::top_k_device(logits.Data(), rows, vocab, (int)k, ids.Data(), values.Data()));
  } else {
    throw Napi::TypeError::New(env, "where must be \"device\" or \"host\"");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ids", ids);
  out.Set("values", values);
  return out;
}

// f16Linear(weights, rows, cols, x, tokens) on the device.
Napi::Value F16Linear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t rows = int_arg(info, 1, "rows", 1);
  const int64_t cols = int_arg(info, 2, "cols", 1);
  const int64_t T = int_arg(info, 4, "tokens", 1);
  auto w = array_arg<uint16_t, napi_uint16_array>(info, 0, "weights", (size_t)(rows * cols));
  auto x = array_arg<float, napi_float32_array>(info, 3, "x", (size_t)(T * cols));
  auto y = Napi::Float32Array::New(env, (size_t)(T * rows));
  throw_if(env, bitnet_cuda::f16_linear_device(w.Data(), rows, cols, x.Data(), T, y.Data()));
  return y;
}

// timeI2sGemv(rows, cols, tokens, reps, kernel) → median ms (kernel: 0 as a step picks, 1 dp4a,
// 2 tensor cores); timeCopy(bytes, reps) → median ms.
Napi::Value TimeI2sGemv(const Napi::CallbackInfo& info) {
  const int64_t rows = int_arg(info, 0, "rows", 1);
  const int64_t cols = int_arg(info, 1, "cols", 128);
  if (cols % 128 != 0) throw Napi::RangeError::New(info.Env(), "cols must be a multiple of 128");
  const int64_t T = int_arg(info, 2, "tokens", 1);
  const int reps = (int)int_arg(info, 3, "reps", 1);
  const int kernel = info.Length() > 4 ? (int)int_arg(info, 4, "kernel", 0) : 0;
  if (kernel > 2) throw Napi::RangeError::New(info.Env(), "kernel must be 0 (auto), 1 (dp4a) or 2 (tensor cores)");
  double ms = 0;
  throw_if(info.Env(), bitnet_cuda::time_i2s_gemv(rows, cols, T, kernel, reps, &ms));
  return Napi::Number::New(info.Env(), ms);
}

Napi::Value TimeCopy(const Napi::CallbackInfo& info) {
  const int64_t bytes = int_arg(info, 0, "bytes", 1);
  const int reps = (int)int_arg(info, 1, "reps", 1);
  double ms = 0;
  throw_if(info.Env(), bitnet_cuda::time_copy(bytes, reps, &ms));
  return Napi::Number::New(info.Env(), ms);
}


// ---------------------------------------------------------------------------------------------
// A compiled model: createModel(spec, where) → { setWeight, finish, createSequence, forkSequence,
// freeSequence, step (a Promise: the step runs on a libuv worker), memory, dispose }.
using bitnet_cuda::Model;

int64_t get_int(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("spec.") + key + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}

class StepWorker;

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeCudaModel",
                       {InstanceMethod("setWeight", &NativeModel::SetWeight),
                        InstanceMethod("finish", &NativeModel::Finish),
                        InstanceMethod("createSequence", &NativeModel::CreateSequence),
                        InstanceMethod("forkSequence", &NativeModel::ForkSequence),
                        InstanceMethod("freeSequence", &NativeModel::FreeSequence),
                        InstanceMethod("step", &NativeModel::Step),
                        InstanceMethod("memory", &NativeModel::Memory),
                        InstanceMethod("fusedOps", &NativeModel::FusedOps),
                        InstanceMethod("dispose", &NativeModel::Dispose)});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsString()) {
      throw Napi::TypeError::New(env, "createModel(spec, where) takes a spec object and \"device\" or \"host\"");
    }
    const Napi::Object spec = info[0].As<Napi::Object>();
    bitnet_cuda::HParams hp;
    hp.n_embd = get_int(spec, "nEmbd");
    hp.n_layer = get_int(spec, "nLayer");
    hp.n_head = get_int(spec, "nHead");
    hp.n_head_kv = get_int(spec, "nHeadKv");
    hp.head_dim = get_int(spec, "headDim");
    hp.n_rot = get_int(spec, "nRot");
    hp.vocab = get_int(spec, "vocabSize");
    hp.context = get_int(spec, "contextLength");
    hp.max_batch = get_int(spec, "maxBatch");
    if (!spec.Get("ropeFreqBase").IsNumber() || !spec.Get("rmsEps").IsNumber()) {
      throw Napi::TypeError::New(env, "spec.ropeFreqBase and spec.rmsEps must be numbers");
    }
    hp.rope_base = spec.Get("ropeFreqBase").As<Napi::Number>().DoubleValue();
    hp.rms_eps = spec.Get("rmsEps").As<Napi::Number>().FloatValue();
    vocab_ = hp.vocab;
    // Every size the model allocates from is checked here: positive, and small enough that no
    // product of them overflows (2^24 per dimension; a 2B-4T model is far below).
    const int64_t limit = 1 << 24;
    for (const int64_t v : {hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, hp.vocab, hp.context,
                            hp.max_batch}) {
      if (v < 1 || v > limit) throw Napi::RangeError::New(env, "spec has a size outside 1.." + std::to_string(limit));
    }
    if (hp.n_head % hp.n_head_kv != 0 || hp.n_rot < 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0) {
      throw Napi::RangeError::New(env, "spec has an impossible shape (heads or rotary dimensions)");
    }
    // In double: each factor may be up to 2^24, so the int64 product could overflow.
    if ((double)hp.max_batch * (double)hp.n_head * (double)hp.context > (double)((int64_t)1 << 32)) {
      throw Napi::RangeError::New(env, "maxBatch × heads × context is too large for the attention scratch");
    }
    if (!(hp.rope_base > 0) || !(hp.rms_eps >= 0)) {
      throw Napi::RangeError::New(env, "spec has a bad RoPE base or RMS epsilon");
    }
    if (!spec.Get("ops").IsArray() || !spec.Get("bufferWidths").IsArray()) {
      throw Napi::TypeError::New(env, "spec.ops and spec.bufferWidths must be arrays");
    }
    const Napi::Array ops = spec.Get("ops").As<Napi::Array>();
    std::vector<bitnet_cuda::OpSpec> list;
    for (uint32_t i = 0; i < ops.Length(); i++) {
      if (!ops.Get(i).IsObject()) throw Napi::TypeError::New(env, "spec.ops must hold objects");
      const Napi::Object o = ops.Get(i).As<Napi::Object>();
      bitnet_cuda::OpSpec op;
      const int64_t kind = get_int(o, "kind");
      if (kind < 0 || kind > 7) throw Napi::RangeError::New(env, "spec.ops has an unknown op kind");
      op.kind = (bitnet_cuda::OpKind)kind;
      op.in0 = (int)get_int(o, "in0");
      op.in1 = (int)get_int(o, "in1");
      op.in2 = (int)get_int(o, "in2");
      op.out = (int)get_int(o, "out");
      op.weight = (int)get_int(o, "weight");
      op.scale = (int)get_int(o, "scale");
      op.heads = (int)get_int(o, "heads");
      op.layer = (int)get_int(o, "layer");
      const int64_t act = get_int(o, "act");
      if (act != 0 && act != 1) throw Napi::RangeError::New(env, "spec.ops has an unknown activation");
      op.act = (bitnet_cuda::Act)act;
      list.push_back(op);
    }
    const Napi::Array widths = spec.Get("bufferWidths").As<Napi::Array>();
    std::vector<int64_t> w;
    for (uint32_t i = 0; i < widths.Length(); i++) {
      if (!widths.Get(i).IsNumber()) throw Napi::TypeError::New(env, "spec.bufferWidths must hold numbers");
      const int64_t width = widths.Get(i).As<Napi::Number>().Int64Value();
      if (width < 1 || width > limit) throw Napi::RangeError::New(env, "spec.bufferWidths has a width outside 1..2^24");
      w.push_back(width);
    }
    const int64_t weight_count = get_int(spec, "weightCount");
    if (weight_count < 0 || weight_count > 100000) throw Napi::RangeError::New(env, "spec.weightCount is out of range");
    const std::string where = info[1].As<Napi::String>();
    try {
      std::unique_ptr<bitnet_cuda::Exec> exec =
          where == "host" ? bitnet_cuda::make_host_exec() : bitnet_cuda::make_cuda_exec((int)get_int(spec, "device"));
      model_ = std::make_unique<Model>(std::move(exec), hp, std::move(list), std::move(w),
                                       (int)weight_count);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  Model& model(const Napi::Env& env) {
    if (!model_) throw Napi::Error::New(env, "the model was disposed");
    if (busy_) throw Napi::Error::New(env, "a step is running on this model");
    return *model_;
  }

  // Runs f, turning any C++ failure (the executor's, or std::bad_alloc) into a JS error.
  template <typename F>
  void guarded(const Napi::Env& env, F f) {
    try {
      f();
    } catch (const Napi::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  // setWeight(index, kind, rows, cols, bytes: Uint8Array | null, scales: Float32Array | null, scalar)
  Napi::Value SetWeight(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = model(env);
    const int index = (int)int_arg(info, 0, "index", 0);
    const int kind = (int)int_arg(info, 1, "kind", 0);
    const int64_t rows = int_arg(info, 2, "rows", 0);
    const int64_t cols = int_arg(info, 3, "cols", 0);
    const uint8_t* bytes = nullptr;
    size_t n_bytes = 0;
    if (info[4].IsTypedArray()) {
      auto a = info[4].As<Napi::TypedArray>();
      bytes = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
      n_bytes = a.ByteLength();
    }
    const float* scales = nullptr;
    int64_t n_scales = 0;
    if (info[5].IsTypedArray()) {
      auto a = info[5].As<Napi::Float32Array>();
      scales = a.Data();
      n_scales = (int64_t)a.ElementLength();
    }
    const float scalar = info[6].As<Napi::Number>().FloatValue();
    if (kind > 4) throw Napi::RangeError::New(env, "unknown weight kind");
    guarded(env, [&] {
      m.set_weight(index, (bitnet_cuda::WeightKind)kind, rows, cols, bytes, n_bytes, scales, n_scales, scalar);
    });
    return env.Undefined();
  }

  Napi::Value Finish(const Napi::CallbackInfo& info) {
    guarded(info.Env(), [&] { model(info.Env()).finish(); });
    return info.Env().Undefined();
  }
  Napi::Value FusedOps(const Napi::CallbackInfo& info) {
    std::vector<uint8_t> fused;
    guarded(info.Env(), [&] { fused = model(info.Env()).fused_ops(); });
    Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), fused.size());
    std::copy(fused.begin(), fused.end(), out.Data());
    return out;
  }
  Napi::Value CreateSequence(const Napi::CallbackInfo& info) {
    const int id = (int)int_arg(info, 0, "sequence", 0);
    guarded(info.Env(), [&] { model(info.Env()).create_sequence(id); });
    return info.Env().Undefined();
  }
  Napi::Value ForkSequence(const Napi::CallbackInfo& info) {
    const int from = (int)int_arg(info, 0, "from", 0);
    const int to = (int)int_arg(info, 1, "to", 0);
    guarded(info.Env(), [&] { model(info.Env()).fork_sequence(from, to); });
    return info.Env().Undefined();
  }
  Napi::Value FreeSequence(const Napi::CallbackInfo& info) {
    const int id = (int)int_arg(info, 0, "sequence", 0);
    guarded(info.Env(), [&] { model(info.Env()).free_sequence(id); });
    return info.Env().Undefined();
  }
  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) throw Napi::Error::New(env, "the model was disposed");
    // While a step runs on a worker thread, its KV cache may be growing: the figures from before
    // the step, rather than a read racing with the writes.
    if (!busy_ || !has_memory_) {
      guarded(env, [&] { last_memory_ = model_->memory(); });
      has_memory_ = true;
    }
    const bitnet_cuda::MemoryInfo mi = last_memory_;
    Napi::Object o = Napi::Object::New(env);
    o.Set("weightBytes", (double)mi.weight_bytes);
    o.Set("scratchBytes", (double)mi.scratch_bytes);
    o.Set("kvBytes", (double)mi.kv_bytes);
    o.Set("freeBytes", (double)mi.free_bytes);
    o.Set("totalBytes", (double)mi.total_bytes);
    o.Set("kvBytesPerToken", (double)model_->kv_bytes_per_token());
    o.Set("executor", model_->exec_name());
    return o;
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy_) throw Napi::Error::New(info.Env(), "a step is running on this model");
    model_.reset();
    return info.Env().Undefined();
  }

  // step(tokens: Int32Array, seqs: Int32Array, positions: Int32Array, want: Uint8Array,
  //      logits: Float32Array, captureIds: Int32Array, captureOut: Float32Array[],
  //      injectIds: Int32Array, injectData: Float32Array[], rowK: Int32Array, top: Int32Array)
  //      → Promise<void>
  Napi::Value Step(const Napi::CallbackInfo& info);

  std::unique_ptr<Model> model_;
  bool busy_ = false;
  bitnet_cuda::MemoryInfo last_memory_{};
  bool has_memory_ = false;
  int64_t vocab_ = 0;
};

class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, NativeModel* owner, const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner) {
    // The arguments stay referenced (so alive) until the step is done.
    Napi::Array keep = Napi::Array::New(env);
    for (size_t i = 0; i < info.Length(); i++) keep.Set((uint32_t)i, info[i]);
    keep_ = Napi::Persistent(keep);
    tokens_ = info[0].As<Napi::Int32Array>().Data();
    seqs_ = info[1].As<Napi::Int32Array>().Data();
    positions_ = info[2].As<Napi::Int32Array>().Data();
    auto want = info[3].As<Napi::Uint8Array>();
    want_ = want.Data();
    T_ = (int64_t)info[0].As<Napi::Int32Array>().ElementLength();
    if (info[1].As<Napi::Int32Array>().ElementLength() != (size_t)T_ ||
        info[2].As<Napi::Int32Array>().ElementLength() != (size_t)T_ || want.ElementLength() != (size_t)T_) {
      throw Napi::RangeError::New(env, "tokens, sequences, positions and want must have one entry per token");
    }
    auto logits = info[4].As<Napi::Float32Array>();
    logits_ = logits.Data();
    size_t rows = 0;
    for (int64_t t = 0; t < T_; t++) rows += want_[t] != 0;
    // rowK: per logit row, the top-k to select on the executor (0: the whole row); top receives
    // 2 × maxDeviceTopK words per row. Empty arrays: every row whole.
    for (size_t i : {9, 10}) {
      if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(env, i == 9 ? "rowK must be an Int32Array" : "top must be an Int32Array");
      }
    }
    auto row_k = info[9].As<Napi::Int32Array>();
    auto top = info[10].As<Napi::Int32Array>();
    bool any_full = row_k.ElementLength() == 0;
    if (!any_full) {
      if (row_k.ElementLength() != rows) throw Napi::RangeError::New(env, "rowK must have one entry per logit row");
      if (top.ElementLength() < rows * 2 * (size_t)bitnet_cuda::kMaxDeviceTopK) {
        throw Napi::RangeError::New(env, "top is too short for the rows that want their top-k");
      }
      for (size_t r = 0; r < rows; r++) {
        const int32_t k = row_k[r];
        if (k < 0 || k > bitnet_cuda::kMaxDeviceTopK || k > owner->vocab_) {
          throw Napi::RangeError::New(env, "rowK entries must be from 0 to " +
                                               std::to_string(std::min<int64_t>(bitnet_cuda::kMaxDeviceTopK, owner->vocab_)));
        }
        any_full = any_full || k == 0;
      }
      row_k_ = row_k.Data();
      top_ = top.Data();
    }
    if (any_full && logits.ElementLength() < rows * (size_t)owner->vocab_) {
      throw Napi::RangeError::New(env, "logits is too short for the rows that want them");
    }
    // Each captured or injected buffer holds T × its width values: a shorter array would be read
    // or written past its end.
    auto buffer_array = [&](const Napi::Array& arrays, uint32_t i, int32_t id, const char* what) {
      const int64_t width = owner->model_->buffer_width(id);
      if (width < 0) throw Napi::RangeError::New(env, std::string(what) + " names buffer " + std::to_string(id) + ", which does not exist");
      if (i >= arrays.Length() || !arrays.Get(i).IsTypedArray() ||
          arrays.Get(i).As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw Napi::TypeError::New(env, std::string(what) + " needs a Float32Array for buffer " + std::to_string(id));
      }
      const Napi::Float32Array a = arrays.Get(i).As<Napi::Float32Array>();
      if (a.ElementLength() < (size_t)(T_ * width)) {
        throw Napi::RangeError::New(env, std::string(what) + " for buffer " + std::to_string(id) + " holds " +
                                             std::to_string(a.ElementLength()) + " values, not " + std::to_string(T_ * width));
      }
      return a;
    };
    auto cap_ids = info[5].As<Napi::Int32Array>();
    auto cap_out = info[6].As<Napi::Array>();
    for (size_t i = 0; i < cap_ids.ElementLength(); i++) {
      capture_.push_back(cap_ids[i]);
      captured_.push_back(buffer_array(cap_out, (uint32_t)i, cap_ids[i], "captureOut").Data());
    }
    auto inj_ids = info[7].As<Napi::Int32Array>();
    auto inj_data = info[8].As<Napi::Array>();
    for (size_t i = 0; i < inj_ids.ElementLength(); i++) {
      inject_.push_back(inj_ids[i]);
      injected_.push_back(const_cast<const float*>(buffer_array(inj_data, (uint32_t)i, inj_ids[i], "injectData").Data()));
    }
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      owner_->model_->step(tokens_, seqs_, positions_, want_, T_, logits_, row_k_, top_, capture_, captured_, inject_,
                           injected_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    owner_->busy_ = false;
    deferred_.Resolve(Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    owner_->busy_ = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  NativeModel* owner_;
  Napi::Reference<Napi::Array> keep_;
  const int32_t *tokens_, *seqs_, *positions_;
  const uint8_t* want_;
  int64_t T_;
  float* logits_;
  const int32_t* row_k_ = nullptr;
  int32_t* top_ = nullptr;
  std::vector<int> capture_, inject_;
  std::vector<float*> captured_;
  std::vector<const float*> injected_;
};

Napi::Value NativeModel::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  model(env);
  if (info.Length() < 11) throw Napi::TypeError::New(env, "step takes eleven arguments");
  auto* worker = new StepWorker(env, this, info);
  busy_ = true;
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// timeCublasBf16Gemv(rows, cols, reps, library) → { ms, library }.
Napi::Value TimeCublasBf16Gemv(const Napi::CallbackInfo& info) {
  const int64_t rows = int_arg(info, 0, "rows", 1);
  const int64_t cols = int_arg(info, 1, "cols", 1);
  const int reps = (int)int_arg(info, 2, "reps", 1);
  const std::string library = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  double ms = 0;
  std::string loaded;
  throw_if(info.Env(), bitnet_cuda::time_cublas_bf16_gemv(library.c_str(), rows, cols, reps, &ms, &loaded));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("ms", ms);
  o.Set("library", loaded);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeCudaModel", NativeModel::Define(env));
  exports.Set("timeCublasBf16Gemv", Napi::Function::New(env, TimeCublasBf16Gemv));
  exports.Set("status", Napi::Function::New(env, Status_));
  exports.Set("i2sLinear", Napi::Function::New(env, I2sLinear));
  exports.Set("f16Linear", Napi::Function::New(env, F16Linear));
  exports.Set("topK", Napi::Function::New(env, TopK));
  // Steps of this many tokens or more run their ternary projections on tensor cores (a
  // function: the environment is read when first asked).
  exports.Set("tensorCoreMinTokens", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                const int64_t n = bitnet_cuda::tensor_core_min_tokens();
                return Napi::Number::New(info.Env(), n == INT64_MAX ? std::numeric_limits<double>::infinity() : (double)n);
              }));
  exports.Set("maxDeviceTopK", Napi::Number::New(env, bitnet_cuda::kMaxDeviceTopK));
  exports.Set("timeI2sGemv", Napi::Function::New(env, TimeI2sGemv));
  exports.Set("timeCopy", Napi::Function::New(env, TimeCopy));
  return exports;
}

}  // namespace

NODE_API_MODULE(bitnet_kernels_cuda, Init)
