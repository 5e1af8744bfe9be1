// ---------------------------------------------------------------------------------------------
// N-API glue (node-addon-api). The whole surface is declared in src/binding.ts. Bulk data
// crosses only as typed arrays; a step is one AsyncWorker (the event loop stays free) that runs
// every op of every layer on the model's own thread pool.
// ---------------------------------------------------------------------------------------------
#include <napi.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model.h"

namespace {

using bitnet::Model;
using bitnet::ModelConfig;

int64_t GetInt(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int64Value(); }
double GetNum(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("createSequence", &NativeModel::CreateSequence),
                        InstanceMethod("freeSequence", &NativeModel::FreeSequence),
                        InstanceMethod("forkSequence", &NativeModel::ForkSequence),
                        InstanceMethod("truncateSequence", &NativeModel::TruncateSequence),
                        InstanceMethod("step", &NativeModel::Step),
                        InstanceMethod("kernelCounts", &NativeModel::KernelCounts),
                        InstanceMethod("info", &NativeModel::Info),
                        InstanceMethod("dispose", &NativeModel::Dispose)});
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Env env = info.Env();
    const Napi::Object c = info[0].As<Napi::Object>();
    ModelConfig cfg;
    cfg.path = c.Get("path").As<Napi::String>().Utf8Value();
    cfg.n_embd = GetInt(c, "nEmbd");
    cfg.n_layer = GetInt(c, "nLayer");
    cfg.n_ff = GetInt(c, "nFf");
    cfg.n_head = GetInt(c, "nHead");
    cfg.n_head_kv = GetInt(c, "nHeadKv");
    cfg.head_dim = GetInt(c, "headDim");
    cfg.n_rot = GetInt(c, "nRot");
    cfg.vocab = GetInt(c, "vocabSize");
    cfg.context = GetInt(c, "contextLength");
    cfg.rope_base = (float)GetNum(c, "ropeFreqBase");
    cfg.eps = (float)GetNum(c, "rmsEps");
    cfg.threads = (int)GetInt(c, "threads");
    cfg.max_batch = (int)GetInt(c, "maxBatch");
    cfg.kernel_path = c.Get("kernelPath").As<Napi::String>().Utf8Value();
    cfg.head_q8_0 = c.Get("headQ8_0").As<Napi::Boolean>().Value();
    cfg.use_mmap = c.Get("mmap").As<Napi::Boolean>().Value();
    const Napi::Array tensors = c.Get("tensors").As<Napi::Array>();
    for (uint32_t i = 0; i < tensors.Length(); i++) {
      const Napi::Object t = tensors.Get(i).As<Napi::Object>();
      cfg.tensors.push_back({t.Get("name").As<Napi::String>().Utf8Value(), (int32_t)GetInt(t, "type"), GetInt(t, "ne0"),
                             GetInt(t, "ne1"), (uint64_t)GetInt(t, "offset"), (uint64_t)GetInt(t, "bytes")});
    }
    const Napi::Array ops = c.Get("ops").As<Napi::Array>();
    for (uint32_t i = 0; i < ops.Length(); i++) {
      const Napi::Object o = ops.Get(i).As<Napi::Object>();
      bitnet::OpSpec op;
      op.kind = (int32_t)GetInt(o, "kind");
      op.in0 = (int32_t)GetInt(o, "in0");
      op.in1 = (int32_t)GetInt(o, "in1");
      op.in2 = (int32_t)GetInt(o, "in2");
      op.out = (int32_t)GetInt(o, "out");
      op.weight = (int32_t)GetInt(o, "weight");
      op.scale = (int32_t)GetInt(o, "scale");
      op.heads = (int32_t)GetInt(o, "heads");
      op.layer = (int32_t)GetInt(o, "layer");
      op.act = (int32_t)GetInt(o, "act");
      cfg.ops.push_back(op);
    }
    const Napi::Array widths = c.Get("bufferWidths").As<Napi::Array>();
    for (uint32_t i = 0; i < widths.Length(); i++) cfg.buffer_widths.push_back(widths.Get(i).As<Napi::Number>().Int64Value());
    try {
      model_ = std::make_unique<Model>(std::move(cfg));
    } catch (const std::exception& e) {
      Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
    }
  }

  Model* model() { return model_.get(); }

 private:
  Napi::Value CreateSequence(const Napi::CallbackInfo& info) {
    if (!Alive(info.Env())) return info.Env().Undefined();
    model_->create_sequence(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  Napi::Value FreeSequence(const Napi::CallbackInfo& info) {
    if (!Alive(info.Env())) return info.Env().Undefined();
    model_->free_sequence(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  Napi::Value ForkSequence(const Napi::CallbackInfo& info) {
    if (!Alive(info.Env())) return info.Env().Undefined();
    try {
      model_->fork_sequence(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
    } catch (const std::exception& e) {
      Napi::Error::New(info.Env(), e.what()).ThrowAsJavaScriptException();
    }
    return info.Env().Undefined();
  }
  Napi::Value TruncateSequence(const Napi::CallbackInfo& info) {
    if (!Alive(info.Env())) return info.Env().Undefined();
    try {
      model_->truncate_sequence(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value());
    } catch (const std::exception& e) {
      Napi::Error::New(info.Env(), e.what()).ThrowAsJavaScriptException();
    }
    return info.Env().Undefined();
  }
  Napi::Value KernelCounts(const Napi::CallbackInfo& info) {
    Napi::Object out = Napi::Object::New(info.Env());
    if (model_) {
      for (const auto& [k, v] : model_->kernel_counts()) out.Set(k, Napi::Number::New(info.Env(), (double)v));
    }
    return out;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object out = Napi::Object::New(info.Env());
    if (model_) {
      out.Set("kernelPath", model_->kernel_name());
      out.Set("threads", model_->threads());
      out.Set("mappedBytes", (double)model_->mapped_bytes());
      out.Set("hugeMappedBytes", (double)model_->huge_mapped_bytes());
      out.Set("loadedBytes", (double)model_->loaded_bytes());
      out.Set("repackedBytes", (double)model_->repacked_bytes());
      Napi::Object times = Napi::Object::New(info.Env());
      for (const auto& [k, v] : model_->op_times()) times.Set(k, Napi::Number::New(info.Env(), (double)v / 1e6));
      out.Set("opMilliseconds", times);
    }
    return out;
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }
  bool Alive(Napi::Env env) {
    if (!model_) {
      Napi::Error::New(env, "the native model was disposed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Napi::Value Step(const Napi::CallbackInfo& info);

  std::unique_ptr<Model> model_;
};

class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, NativeModel* owner, const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), owner_(owner) {
    owner_->Ref();
    for (size_t i = 0; i < 6; i++) {
      keep_.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
    }
    tokens_ = info[0].As<Napi::Int32Array>();
    seqs_ = info[1].As<Napi::Int32Array>();
    positions_ = info[2].As<Napi::Int32Array>();
    want_ = info[3].As<Napi::Uint8Array>();
    logits_ = info[4].As<Napi::Float32Array>();
    const Napi::Int32Array capture = info[5].As<Napi::Int32Array>();
    for (size_t i = 0; i < capture.ElementLength(); i++) capture_.push_back(capture[i]);
    if (info.Length() > 6 && info[6].IsArray()) {
      const Napi::Array outs = info[6].As<Napi::Array>();
      for (uint32_t i = 0; i < outs.Length(); i++) {
        Napi::Float32Array a = outs.Get(i).As<Napi::Float32Array>();
        keep_.push_back(Napi::Persistent(a.As<Napi::Object>()));
        capture_out_.push_back(a.Data());
      }
    }
    if (info.Length() > 8 && info[7].IsTypedArray() && info[8].IsArray()) {
      const Napi::Int32Array ids = info[7].As<Napi::Int32Array>();
      const Napi::Array data = info[8].As<Napi::Array>();
      const uint32_t n = std::min<uint32_t>(data.Length(), (uint32_t)ids.ElementLength());  // the TS side checks they match
      for (uint32_t i = 0; i < n; i++) {
        Napi::Float32Array a = data.Get(i).As<Napi::Float32Array>();
        keep_.push_back(Napi::Persistent(a.As<Napi::Object>()));
        inject_.push_back(ids[i]);
        inject_data_.push_back(a.Data());
      }
    }
  }
  ~StepWorker() override { owner_->Unref(); }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      owner_->model()->step(tokens_.Data(), seqs_.Data(), positions_.Data(), (int64_t)tokens_.ElementLength(), want_.Data(),
                            logits_.Data(), capture_, capture_out_, inject_, inject_data_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  NativeModel* owner_;
  std::vector<Napi::ObjectReference> keep_;
  Napi::Int32Array tokens_, seqs_, positions_;
  Napi::Uint8Array want_;
  Napi::Float32Array logits_;
  std::vector<int32_t> capture_;
  std::vector<float*> capture_out_;
  std::vector<int32_t> inject_;
  std::vector<const float*> inject_data_;
};

Napi::Value NativeModel::Step(const Napi::CallbackInfo& info) {
  if (!Alive(info.Env())) return info.Env().Undefined();
  auto* worker = new StepWorker(info.Env(), this, info);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// measureBandwidth({ path?, offset, bytes, threads, reps, kernelPath }): read bandwidth of a region
// of a file mapped read-only (as the model's weights are by default) or, without a path, of
// anonymous huge-page memory (as with mmap: false). Resolves to one GB/s figure per repetition.
class BandwidthWorker : public Napi::AsyncWorker {
 public:
  BandwidthWorker(Napi::Env env, const Napi::Object& o)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {
    if (o.Has("path") && o.Get("path").IsString()) path_ = o.Get("path").As<Napi::String>().Utf8Value();
    offset_ = o.Has("offset") ? GetInt(o, "offset") : 0;
    bytes_ = GetInt(o, "bytes");
    threads_ = (int)GetInt(o, "threads");
    reps_ = (int)GetInt(o, "reps");
    kernel_path_ = o.Has("kernelPath") ? o.Get("kernelPath").As<Napi::String>().Utf8Value() : "auto";
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const bitnet::Kernels* k = bitnet::select_kernels(kernel_path_ == "amx" ? "avx512vnni" : kernel_path_.c_str());
    if (k == nullptr) return SetError("kernel path \"" + kernel_path_ + "\" is not available on this CPU");
    if (bytes_ < (1 << 20) || threads_ < 1 || reps_ < 1) return SetError("bandwidth probe needs ≥ 1 MiB, ≥ 1 thread, ≥ 1 repetition");
    const int64_t bytes = bytes_ / 64 * 64;
    if (path_.empty()) {
      const size_t huge = 2u << 20;
      const size_t size = ((size_t)bytes + huge - 1) / huge * huge;
      uint8_t* p = (uint8_t*)std::aligned_alloc(huge, size);
      if (p == nullptr) return SetError("could not allocate " + std::to_string(size) + " bytes");
      ::madvise(p, size, MADV_HUGEPAGE);
      for (size_t i = 0; i < size; i += 4096) p[i] = (uint8_t)i;  // touch every page
      std::memset(p, 1, size);
      rates_ = bitnet::measure_read_bandwidth(*k, p, bytes, threads_, reps_);
      std::free(p);
      return;
    }
    const int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) return SetError("could not open " + path_ + ": " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0 || offset_ < 0 || offset_ + bytes > (int64_t)st.st_size) {
      ::close(fd);
      return SetError("the region is outside " + path_);
    }
    // Mapped exactly as the model loader maps weights, so the bound matches what steps read.
    const int64_t page = ::sysconf(_SC_PAGESIZE);
    const int64_t start = offset_ / page * page;
    bitnet::FileMap map;
    const std::string failure = bitnet::map_file(fd, (uint64_t)start, (size_t)(offset_ + bytes - start), map);
    ::close(fd);
    if (!failure.empty()) return SetError("could not map " + path_ + ": " + failure);
    rates_ = bitnet::measure_read_bandwidth(*k, map.data + (offset_ - start), bytes, threads_, reps_);
    bitnet::unmap_file(map);
  }
  void OnOK() override {
    Napi::Array out = Napi::Array::New(Env(), rates_.size());
    for (size_t i = 0; i < rates_.size(); i++) out.Set((uint32_t)i, rates_[i]);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_, kernel_path_;
  int64_t offset_ = 0, bytes_ = 0;
  int threads_ = 1, reps_ = 1;
  std::vector<double> rates_;
};

Napi::Value MeasureBandwidth(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(info.Env(), "measureBandwidth expects an options object").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto* worker = new BandwidthWorker(info.Env(), info[0].As<Napi::Object>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value AvailablePaths(const Napi::CallbackInfo& info) {
  const char* names[8];
  const int n = bitnet::available_kernel_paths(names, 8);
  Napi::Array out = Napi::Array::New(info.Env(), (size_t)n);
  for (int i = 0; i < n; i++) out.Set((uint32_t)i, names[i]);
  return out;
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeModel", NativeModel::Init(env));
  exports.Set("availablePaths", Napi::Function::New(env, AvailablePaths));
  exports.Set("measureBandwidth", Napi::Function::New(env, MeasureBandwidth));
  exports.Set("abiVersion", Napi::Number::New(env, 4));  // bump with every change to src/binding.ts
  return exports;
}

}  // namespace

NODE_API_MODULE(bitnet_kernels_cpu, InitAll)
