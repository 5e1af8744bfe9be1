// ---------------------------------------------------------------------------------------------
// N-API glue (node-addon-api). The whole surface is declared in src/binding.ts. Bulk data
// crosses only as typed arrays; loading a model is one AsyncProgressQueueWorker, and its steps
// run on the model's own step thread (the event loop stays free), worker 0 of its thread pool.
// ---------------------------------------------------------------------------------------------
#include <napi.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "job_thread.h"
#include "softmax.h"
#include "top_k.h"
#include "model.h"
#include "platform.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace {

// After a failed load: hand the freed repack buffers back to the OS. glibc keeps memory freed
// on a worker thread in that thread's arena (a failed bench-tq1 load otherwise leaves ~1.7 GB
// resident); other allocators return large blocks themselves.
void return_freed_memory() {
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

using bitnet::Model;
using bitnet::ModelConfig;

// Typed reads of option objects: a wrong or missing field throws a TypeError that names it.
Napi::Value GetField(const Napi::Object& o, const char* key, napi_valuetype type, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (v.Type() != type) {
    const char* want = type == napi_number ? "a number" : type == napi_string ? "a string" : type == napi_boolean ? "a boolean" : "an object";
    throw Napi::TypeError::New(o.Env(), where + "." + key + " must be " + want);
  }
  return v;
}
int64_t GetInt(const Napi::Object& o, const char* key, const std::string& where = "options") {
  return GetField(o, key, napi_number, where).As<Napi::Number>().Int64Value();
}
double GetNum(const Napi::Object& o, const char* key, const std::string& where = "options") {
  return GetField(o, key, napi_number, where).As<Napi::Number>().DoubleValue();
}
std::string GetStr(const Napi::Object& o, const char* key, const std::string& where = "options") {
  return GetField(o, key, napi_string, where).As<Napi::String>().Utf8Value();
}
bool GetBool(const Napi::Object& o, const char* key, const std::string& where = "options") {
  return GetField(o, key, napi_boolean, where).As<Napi::Boolean>().Value();
}
Napi::Array GetArray(const Napi::Object& o, const char* key, const std::string& where) {
  const Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), where + "." + key + " must be an array");
  return v.As<Napi::Array>();
}
Napi::Object GetItem(const Napi::Array& a, uint32_t i, const std::string& where) {
  const Napi::Value v = a.Get(i);
  if (!v.IsObject()) throw Napi::TypeError::New(a.Env(), where + "[" + std::to_string(i) + "] must be an object");
  return v.As<Napi::Object>();
}

// NativeModelConfig (src/binding.ts) → ModelConfig, on the JS thread (nothing of it is read later).
ModelConfig ParseConfig(const Napi::Object& c) {
  const std::string where = "config";
  ModelConfig cfg;
  cfg.path = GetStr(c, "path", where);
  cfg.n_embd = GetInt(c, "nEmbd", where);
  cfg.n_layer = GetInt(c, "nLayer", where);
  cfg.n_ff = GetInt(c, "nFf", where);
  cfg.n_head = GetInt(c, "nHead", where);
  cfg.n_head_kv = GetInt(c, "nHeadKv", where);
  cfg.head_dim = GetInt(c, "headDim", where);
  cfg.n_rot = GetInt(c, "nRot", where);
  cfg.vocab = GetInt(c, "vocabSize", where);
  cfg.context = GetInt(c, "contextLength", where);
  cfg.rope_base = (float)GetNum(c, "ropeFreqBase", where);
  cfg.eps = (float)GetNum(c, "rmsEps", where);
  cfg.threads = (int)GetInt(c, "threads", where);
  cfg.max_batch = (int)GetInt(c, "maxBatch", where);
  cfg.kernel_path = GetStr(c, "kernelPath", where);
  {
    const std::string tq1 = GetStr(c, "tq1", where);
    if (tq1 != "repack" && tq1 != "direct") {
      throw Napi::TypeError::New(c.Env(), where + ".tq1 must be \"repack\" or \"direct\" (got \"" + tq1 + "\")");
    }
    cfg.tq1_direct = tq1 == "direct";
  }
  {
    const std::string head = GetStr(c, "head", where);
    if (head == "q8_0") {
      cfg.head_type = bitnet::T_Q8_0;
    } else if (head == "q6_k") {
      cfg.head_type = bitnet::T_Q6_K;
    } else if (head != "") {
      throw Napi::TypeError::New(c.Env(), std::string(where) + ".head must be \"\", \"q8_0\" or \"q6_k\" (got \"" + head + "\")");
    }
  }
  cfg.use_mmap = GetBool(c, "mmap", where);
  const Napi::Array tensors = GetArray(c, "tensors", where);
  for (uint32_t i = 0; i < tensors.Length(); i++) {
    const std::string at = where + ".tensors[" + std::to_string(i) + "]";
    const Napi::Object t = GetItem(tensors, i, where + ".tensors");
    cfg.tensors.push_back({GetStr(t, "name", at), (int32_t)GetInt(t, "type", at), GetInt(t, "ne0", at), GetInt(t, "ne1", at),
                           (uint64_t)GetInt(t, "offset", at), (uint64_t)GetInt(t, "bytes", at)});
  }
  const Napi::Array ops = GetArray(c, "ops", where);
  for (uint32_t i = 0; i < ops.Length(); i++) {
    const std::string at = where + ".ops[" + std::to_string(i) + "]";
    const Napi::Object o = GetItem(ops, i, where + ".ops");
    bitnet::OpSpec op;
    op.kind = (int32_t)GetInt(o, "kind", at);
    op.in0 = (int32_t)GetInt(o, "in0", at);
    op.in1 = (int32_t)GetInt(o, "in1", at);
    op.in2 = (int32_t)GetInt(o, "in2", at);
    op.out = (int32_t)GetInt(o, "out", at);
    op.weight = (int32_t)GetInt(o, "weight", at);
    op.scale = (int32_t)GetInt(o, "scale", at);
    op.heads = (int32_t)GetInt(o, "heads", at);
    op.layer = (int32_t)GetInt(o, "layer", at);
    op.act = (int32_t)GetInt(o, "act", at);
    cfg.ops.push_back(op);
  }
  const Napi::Array widths = GetArray(c, "bufferWidths", where);
  for (uint32_t i = 0; i < widths.Length(); i++) {
    const Napi::Value w = widths.Get(i);
    if (!w.IsNumber()) throw Napi::TypeError::New(c.Env(), where + ".bufferWidths[" + std::to_string(i) + "] must be a number");
    cfg.buffer_widths.push_back(w.As<Napi::Number>().Int64Value());
  }
  return cfg;
}

// Per-addon-instance state (one per Node environment: main thread, each worker thread).
struct StepJob;

struct AddonData {
  Napi::FunctionReference model_class;  // NativeModel's constructor, for the load worker
};

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

  // Internal: the load worker passes the model it built (an External holding its unique_ptr).
  // JavaScript cannot make an External, so `new` from JS always throws: use loadModel().
  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NativeModel cannot be constructed directly: use binding.loadModel(config)");
    }
    model_ = std::move(*info[0].As<Napi::External<std::unique_ptr<Model>>>().Data());
    env_ = info.Env();
    step_done_ = StepDoneFunction::New(env_, "bitnet-step", 0, 1, this);
    step_done_.Unref(env_);
    // Between steps the step thread (worker 0 of the model's pool) asks L2 for the next step's
    // first weights, as the pool's other workers do (Model::warm_between_steps).
    steps_ = std::make_unique<bitnet::JobThread>([m = model_.get()] { return m->warm_between_steps(0); });
    // Added after the thread-safe function's own teardown hook, so it runs before it (hooks run
    // last in, first out): a process that exits mid-step lets the step finish, then ends the
    // thread while the function can still take its call.
    napi_add_env_cleanup_hook(env_, StopStepsAtExit, this);
  }

  ~NativeModel() override { StopSteps(); }

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
      out.Set("rereadBytes", (double)model_->reread_bytes());
      out.Set("loadedBytes", (double)model_->loaded_bytes());
      out.Set("repackedBytes", (double)model_->repacked_bytes());
      out.Set("kvBytesPerToken", (double)model_->kv_bytes_per_token());
      out.Set("kvAllocatedBytes", (double)model_->kv_allocated_bytes());
      out.Set("kvSpareBytes", (double)model_->kv_spare_bytes());
      out.Set("scratchBytes", (double)model_->scratch_bytes());
      out.Set("warmedBetweenStepsBytes", (double)model_->warmed_between_steps());
      Napi::Object times = Napi::Object::New(info.Env());
      for (const auto& [k, v] : model_->op_times()) times.Set(k, Napi::Number::New(info.Env(), (double)v / 1e6));
      out.Set("opMilliseconds", times);
      Napi::Object fused = Napi::Object::New(info.Env());
      for (const auto& [k, v] : model_->decode_fused_ops()) fused.Set(k, Napi::Number::New(info.Env(), (double)v));
      out.Set("decodeFusedOps", fused);
    }
    return out;
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    StopSteps();
    model_.reset();
    return info.Env().Undefined();
  }
  // Lets the steps already posted finish (their promises still settle), then ends the step
  // thread and lets the thread-safe function go once those calls are delivered.
  void StopSteps() {
    if (!steps_) return;
    napi_remove_env_cleanup_hook(env_, StopStepsAtExit, this);
    steps_->stop();
    steps_.reset();
    step_done_.Release();
  }
  static void StopStepsAtExit(void* self) { static_cast<NativeModel*>(self)->StopSteps(); }
  bool Alive(Napi::Env env) {
    if (!model_) {
      Napi::Error::New(env, "the native model was disposed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Napi::Value Step(const Napi::CallbackInfo& info);
  static void StepDone(Napi::Env env, Napi::Function, NativeModel* self, StepJob* job);
  using StepDoneFunction = Napi::TypedThreadSafeFunction<NativeModel, StepJob, &NativeModel::StepDone>;

  std::unique_ptr<Model> model_;
  napi_env env_ = nullptr;
  std::unique_ptr<bitnet::JobThread> steps_;  // null once stopped (dispose, finalizer or exit)
  StepDoneFunction step_done_;
  int steps_in_flight_ = 0;  // main thread only
};

// A step's inputs and outcome, from Step() until its promise settles on the main thread: the
// typed arrays it reads and writes stay referenced (so garbage collection cannot free them while
// the step thread uses them), and only the main thread creates or drops those references.
struct StepJob {
  explicit StepJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  std::vector<Napi::ObjectReference> keep;
  const int32_t* tokens = nullptr;
  const int32_t* seqs = nullptr;
  const int32_t* positions = nullptr;
  const uint8_t* want = nullptr;
  float* logits = nullptr;
  int64_t count = 0;
  std::vector<int32_t> capture;
  std::vector<float*> capture_out;
  std::vector<int32_t> inject;
  std::vector<const float*> inject_data;
  std::string error;
  bool failed = false;
};

// step(tokens, seqs, positions, want, logits, captureIds, captureOut?, injectIds?, injectData?):
// runs on the model's own step thread (job_thread.h), which is worker 0 of its thread pool, and
// settles the promise through a thread-safe function. Not libuv's pool: its threads sleep between
// jobs, and waking one cost a token 50-120 µs on a VM.
Napi::Value NativeModel::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Alive(env)) return env.Undefined();
  if (!steps_) {
    Napi::Error::New(env, "the model's step thread has stopped (the environment is shutting down)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto job = std::make_unique<StepJob>(env);
  for (size_t i = 0; i < 6; i++) job->keep.push_back(Napi::Persistent(info[i].As<Napi::Object>()));
  const Napi::Int32Array tokens = info[0].As<Napi::Int32Array>();
  job->tokens = tokens.Data();
  job->count = (int64_t)tokens.ElementLength();
  job->seqs = info[1].As<Napi::Int32Array>().Data();
  job->positions = info[2].As<Napi::Int32Array>().Data();
  job->want = info[3].As<Napi::Uint8Array>().Data();
  job->logits = info[4].As<Napi::Float32Array>().Data();
  const Napi::Int32Array capture = info[5].As<Napi::Int32Array>();
  for (size_t i = 0; i < capture.ElementLength(); i++) job->capture.push_back(capture[i]);
  if (info.Length() > 6 && info[6].IsArray()) {
    const Napi::Array outs = info[6].As<Napi::Array>();
    for (uint32_t i = 0; i < outs.Length(); i++) {
      Napi::Float32Array a = outs.Get(i).As<Napi::Float32Array>();
      job->keep.push_back(Napi::Persistent(a.As<Napi::Object>()));
      job->capture_out.push_back(a.Data());
    }
  }
  if (info.Length() > 8 && info[7].IsTypedArray() && info[8].IsArray()) {
    const Napi::Int32Array ids = info[7].As<Napi::Int32Array>();
    const Napi::Array data = info[8].As<Napi::Array>();
    const uint32_t n = std::min<uint32_t>(data.Length(), (uint32_t)ids.ElementLength());  // the TS side checks they match
    for (uint32_t i = 0; i < n; i++) {
      Napi::Float32Array a = data.Get(i).As<Napi::Float32Array>();
      job->keep.push_back(Napi::Persistent(a.As<Napi::Object>()));
      job->inject.push_back(ids[i]);
      job->inject_data.push_back(a.Data());
    }
  }
  Napi::Promise promise = job->deferred.Promise();
  // While a step is in flight the model object (referenced by the job) stays alive, and the
  // thread-safe function keeps the event loop running (unreferenced otherwise, so an idle model
  // never holds a process open).
  job->keep.push_back(Napi::Persistent(info.This().As<Napi::Object>()));
  if (steps_in_flight_++ == 0) step_done_.Ref(env);
  StepJob* raw = job.release();
  steps_->post([this, raw] {
    try {
      model_->step(raw->tokens, raw->seqs, raw->positions, raw->count, raw->want, raw->logits, raw->capture, raw->capture_out,
                   raw->inject, raw->inject_data);
    } catch (const std::exception& e) {
      raw->failed = true;
      raw->error = e.what();
    }
    // If the environment is already torn down (the process exits), the job is left behind.
    step_done_.NonBlockingCall(raw);
  });
  return promise;
}

// On the main thread: settles a finished step's promise and drops its references.
void NativeModel::StepDone(Napi::Env env, Napi::Function, NativeModel* self, StepJob* raw) {
  std::unique_ptr<StepJob> job(raw);
  if (env == nullptr) {
    // The environment is being torn down: its references go with it, and nothing settles.
    for (Napi::ObjectReference& r : job->keep) r.SuppressDestruct();
    return;
  }
  if (job->failed) {
    job->deferred.Reject(Napi::Error::New(env, job->error).Value());
  } else {
    job->deferred.Resolve(env.Undefined());
  }
  if (--self->steps_in_flight_ == 0 && self->steps_) self->step_done_.Unref(env);
}

// One progress report of a load: a phase name (a string literal) and bytes done of total.
struct LoadEvent {
  const char* phase;
  uint64_t done, total;
};

// loadModel(config, onProgress?): builds the Model on a libuv worker thread (mapping and
// prefaulting or reading the file, repacking) and resolves with a NativeModel. Progress events
// travel through the worker's thread-safe queue, all delivered before the promise settles. The
// worker owns everything until then: the config was copied to C++ up front, the promise and the
// callback are held by persistent references, so neither garbage collection nor an exiting
// process frees what the load thread uses (Node waits for the running work before it tears an
// environment down). A failed load has freed everything before it rejects.
class LoadWorker : public Napi::AsyncProgressQueueWorker<LoadEvent> {
 public:
  LoadWorker(Napi::Env env, ModelConfig config, Napi::Function on_progress)
      : Napi::AsyncProgressQueueWorker<LoadEvent>(env, "bitnet.loadModel"),
        deferred_(Napi::Promise::Deferred::New(env)),
        config_(std::move(config)),
        reports_(!on_progress.IsEmpty()) {
    if (reports_) on_progress_ = Napi::Persistent(on_progress);
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    bitnet::LoadProgress report;
    if (reports_) {
      report = [&progress](const char* phase, uint64_t done, uint64_t total) {
        const LoadEvent event{phase, done, total};
        progress.Send(&event, 1);
      };
    }
    try {
      model_ = std::make_unique<Model>(std::move(config_), report);
    } catch (const std::exception& e) {
      SetError(e.what());
      return_freed_memory();
    }
  }
  ~LoadWorker() override {
    if (model_) {  // built, but the progress callback threw or the environment is going away
      model_.reset();
      return_freed_memory();
    }
  }

  void OnProgress(const LoadEvent* events, size_t count) override {
    if (!reports_ || !callback_error_.IsEmpty()) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    for (size_t i = 0; i < count; i++) {
      try {
        on_progress_.Call({Napi::String::New(env, events[i].phase), Napi::Number::New(env, (double)events[i].done),
                           Napi::Number::New(env, (double)events[i].total)});
      } catch (const Napi::Error& e) {
        // A throwing callback fails the load (with its error) once the model is built, and is
        // not called again.
        callback_error_ = Napi::Persistent(e.Value());
        return;
      }
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!callback_error_.IsEmpty()) {
      deferred_.Reject(callback_error_.Value());  // the model is freed with this worker
      return;
    }
    try {
      AddonData* data = env.GetInstanceData<AddonData>();
      deferred_.Resolve(data->model_class.New({Napi::External<std::unique_ptr<Model>>::New(env, &model_)}));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  ModelConfig config_;
  const bool reports_;
  Napi::FunctionReference on_progress_;
  Napi::ObjectReference callback_error_;
  std::unique_ptr<Model> model_;  // moved into the NativeModel on success; freed here otherwise
};

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "loadModel expects a config object");
    Napi::Function on_progress;
    if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
      if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "loadModel: onProgress must be a function");
      on_progress = info[1].As<Napi::Function>();
    }
    auto* worker = new LoadWorker(env, ParseConfig(info[0].As<Napi::Object>()), on_progress);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  } catch (const Napi::Error& e) {
    // A bad config rejects too: every failure of loadModel arrives the same way.
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(e.Value());
    return deferred.Promise();
  }
}

// measureBandwidth({ path?, offset, bytes, threads, reps, kernelPath }): read bandwidth of a region
// of a file mapped read-only (as the model's weights are by default) or, without a path, of
// anonymous huge-page memory (as with mmap: false). Resolves to one GB/s figure per repetition.
class BandwidthWorker : public Napi::AsyncWorker {
 public:
  BandwidthWorker(Napi::Env env, const Napi::Object& o)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {
    if (o.Has("path") && o.Get("path").IsString()) path_ = o.Get("path").As<Napi::String>().Utf8Value();
    offset_ = o.Has("offset") ? GetInt(o, "offset", "probe") : 0;
    bytes_ = GetInt(o, "bytes", "probe");
    threads_ = (int)GetInt(o, "threads", "probe");
    reps_ = (int)GetInt(o, "reps", "probe");
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
      uint8_t* p = bitnet::alloc_aligned(huge, size);
      if (p == nullptr) return SetError("could not allocate " + std::to_string(size) + " bytes");
      bitnet::advise_huge_pages(p, size);
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
    const int64_t page = (int64_t)bitnet::page_size();
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

// decodePrefetch(): how far ahead the one-token loops prefetch (kernels.h), and the CPU's defaults.
Napi::Value DecodePrefetch(const Napi::CallbackInfo& info) {
  const bitnet::DecodePrefetch& chosen = bitnet::decode_prefetch();
  const bitnet::DecodePrefetch fallback = bitnet::default_decode_prefetch();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("i2s", (double)chosen.i2s);
  out.Set("other", (double)chosen.other);
  out.Set("defaultI2s", (double)fallback.i2s);
  out.Set("defaultOther", (double)fallback.other);
  out.Set("l2", (double)chosen.l2);
  out.Set("defaultL2", (double)fallback.l2);
  out.Set("l2Avx2", (double)chosen.l2_avx2);
  out.Set("defaultL2Avx2", (double)fallback.l2_avx2);
  out.Set("head", (double)chosen.head);
  out.Set("defaultHead", (double)fallback.head);
  out.Set("vectorBits", (double)chosen.vector_bits);
  out.Set("defaultVectorBits", (double)fallback.vector_bits);
  out.Set("headBits", (double)chosen.head_bits);
  out.Set("defaultHeadBits", (double)fallback.head_bits);
  out.Set("nonTemporal", chosen.non_temporal);
  out.Set("defaultNonTemporal", fallback.non_temporal);
  return out;
}

// The kernels of `path` for the test entry points below, or nullptr with a JavaScript error
// thrown when this CPU cannot run it.
const bitnet::Kernels* kernels_for_test(Napi::Env env, const std::string& path) {
  const bitnet::Kernels* k = bitnet::select_kernels(path.c_str());
  if (k == nullptr) {
    Napi::Error::New(env, "kernel path \"" + path + "\" is not available on this CPU").ThrowAsJavaScriptException();
  }
  return k;
}

// quantizeActivations(kernelPath, format, values): one kernel path's activation quantizer on
// `values` (a Float32Array), so tests can hold every path to the scalar one bit for bit.
// format "i8": per-row int8 (one scale and sum); "q8k": Q8_K blocks of 256 (a scale and sum each).
Napi::Value QuantizeActivations(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(env, "quantizeActivations expects (kernelPath, \"i8\" | \"q8k\", Float32Array)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>(), format = info[1].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Float32Array x = info[2].As<Napi::Float32Array>();
  const int64_t n = (int64_t)x.ElementLength();
  const bool q8k = format == "q8k";
  if ((!q8k && format != "i8") || n == 0 || (q8k && n % 256 != 0)) {
    Napi::RangeError::New(env, "quantizeActivations: format \"i8\" needs values, \"q8k\" a multiple of 256 of them")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t groups = q8k ? (size_t)(n / 256) : 1;
  Napi::Int8Array q = Napi::Int8Array::New(env, (size_t)n);
  Napi::Float32Array scales = Napi::Float32Array::New(env, groups);
  Napi::Int32Array sums = Napi::Int32Array::New(env, groups);
  if (q8k) {
    k->quantize_q8k(x.Data(), n, q.Data(), scales.Data(), sums.Data());
  } else {
    k->quantize_i8(x.Data(), n, q.Data(), scales.Data(), sums.Data());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("q", q);
  out.Set("scales", scales);
  out.Set("sums", sums);
  return out;
}

// quantizeQ6K(values): the load-time Q6_K requantizer (ggml quantize_row_q6_K_ref) on a
// Float32Array of a multiple of 256 values, so tests can hold it to the TypeScript one.
Napi::Value QuantizeQ6K(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(env, "quantizeQ6K expects (Float32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  const int64_t n = (int64_t)x.ElementLength();
  if (n == 0 || n % 256 != 0) {
    Napi::RangeError::New(env, "quantizeQ6K needs a positive multiple of 256 values").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array y = Napi::Uint8Array::New(env, (size_t)(n / 256 * bitnet::kQ6KBlockBytes));
  bitnet::quantize_q6_k(x.Data(), y.Data(), n);
  return y;
}

// q6kGemm(kernelPath, weights, rows, x): one path's Q6_K head as the model runs it: the rows of x
// (a Float32Array of T × cols, cols = its length / T from the weights' size) quantized to Q8_K by
// the path's quantizer, then the path's Q6_K × Q8_K kernel. Returns T × rows logits.
Napi::Value Q6KGemm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(env, "q6kGemm expects (kernelPath, Uint8Array, rows, Float32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Uint8Array w = info[1].As<Napi::Uint8Array>();
  const int64_t rows = info[2].As<Napi::Number>().Int64Value();
  const Napi::Float32Array x = info[3].As<Napi::Float32Array>();
  const int64_t blocks = rows > 0 ? (int64_t)w.ElementLength() / bitnet::kQ6KBlockBytes / rows : 0;
  const int64_t cols = blocks * 256;
  if (rows <= 0 || blocks <= 0 || (int64_t)w.ElementLength() != rows * blocks * bitnet::kQ6KBlockBytes ||
      x.ElementLength() == 0 || (int64_t)x.ElementLength() % cols != 0) {
    Napi::RangeError::New(env, "q6kGemm: weights must be rows × whole Q6_K blocks, and x whole rows of that width")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int64_t T = (int64_t)x.ElementLength() / cols;
  std::vector<int8_t> q((size_t)(T * cols));
  std::vector<float> d((size_t)(T * blocks));
  std::vector<int32_t> sums((size_t)(T * blocks));
  std::vector<int16_t> bsum((size_t)(T * cols / 16));
  for (int64_t t = 0; t < T; t++) {
    k->quantize_q8k(x.Data() + t * cols, cols, q.data() + t * cols, d.data() + t * blocks, sums.data() + t * blocks);
    bitnet::q8k_bsums16(q.data() + t * cols, cols, bsum.data() + t * (cols / 16));
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(T * rows));
  k->q6_k_gemm(w.Data(), cols, 0, rows, q.data(), d.data(), bsum.data(), T, out.Data(), rows);
  return out;
}

// f16Gemm(kernelPath, weights, rows, x): one path's F16 kernel (the output head) over `rows` rows
// of f16 bits and the T rows of x (T × cols, cols = weights / rows), x rounded to f16 values first
// as the model rounds the head's input. Returns T × rows outputs.
Napi::Value F16Gemm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(env, "f16Gemm expects (kernelPath, Uint16Array, rows, Float32Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Uint16Array w = info[1].As<Napi::Uint16Array>();
  const int64_t rows = info[2].As<Napi::Number>().Int64Value();
  const Napi::Float32Array x = info[3].As<Napi::Float32Array>();
  const int64_t cols = rows > 0 ? (int64_t)w.ElementLength() / rows : 0;
  if (rows <= 0 || cols <= 0 || (int64_t)w.ElementLength() != rows * cols || x.ElementLength() == 0 ||
      (int64_t)x.ElementLength() % cols != 0) {
    Napi::RangeError::New(env, "f16Gemm: weights must be rows × cols f16 values, and x whole rows of cols")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int64_t T = (int64_t)x.ElementLength() / cols;
  std::vector<float> xr((size_t)(T * cols));
  k->round_f16(x.Data(), xr.data(), T * cols);
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(T * rows));
  k->f16_gemm(w.Data(), cols, 0, rows, xr.data(), T, out.Data(), rows);
  return out;
}

// attnScores(kernelPath, q, heads, keys, stride, len): one path's attention scores of `heads`
// query heads (q: heads × hd f32, f16-rounded by the caller) against one KV head's transposed f16
// keys (hd rows of `stride` positions, the first len of each used); heads × len scores.
Napi::Value AttnScores(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsString() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
      !info[4].IsNumber() || !info[5].IsNumber()) {
    Napi::TypeError::New(env, "attnScores expects (kernelPath, Float32Array, heads, Uint16Array, stride, len)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Float32Array q = info[1].As<Napi::Float32Array>();
  const Napi::Uint16Array keys = info[3].As<Napi::Uint16Array>();
  const int64_t heads = info[2].As<Napi::Number>().Int64Value(), stride = info[4].As<Napi::Number>().Int64Value(),
                len = info[5].As<Napi::Number>().Int64Value();
  const int64_t hd = heads > 0 ? (int64_t)q.ElementLength() / heads : 0;
  if (heads <= 0 || hd <= 0 || (int64_t)q.ElementLength() != heads * hd || len <= 0 || stride < len ||
      (int64_t)keys.ElementLength() < (hd - 1) * stride + len) {
    Napi::RangeError::New(env, "attnScores: q must be heads × hd values, 0 < len <= stride, and keys hold hd rows of stride")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(heads * len));
  k->attn_scores(q.Data(), heads, keys.Data(), stride, hd, len, out.Data(), len);
  return out;
}

// attnValues(kernelPath, p, heads, values, kvw, hd, len[, carry]): one path's attention output of
// `heads` query heads (p: heads × len probabilities, f16-rounded by the caller) against one KV
// head's f16 values (len rows, kvw apart, the first hd of each used); heads × hd outputs, continuing
// the sums in `carry` when given.
Napi::Value AttnValues(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsString() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array ||
      !info[4].IsNumber() || !info[5].IsNumber() || !info[6].IsNumber()) {
    Napi::TypeError::New(env, "attnValues expects (kernelPath, Float32Array, heads, Uint16Array, kvw, hd, len)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Float32Array p = info[1].As<Napi::Float32Array>();
  const Napi::Uint16Array values = info[3].As<Napi::Uint16Array>();
  const int64_t heads = info[2].As<Napi::Number>().Int64Value(), kvw = info[4].As<Napi::Number>().Int64Value(),
                hd = info[5].As<Napi::Number>().Int64Value(), len = info[6].As<Napi::Number>().Int64Value();
  if (heads <= 0 || heads > 64 || len <= 0 || hd <= 0 || kvw < hd || (int64_t)p.ElementLength() != heads * len ||
      (int64_t)values.ElementLength() < (len - 1) * kvw + hd) {
    Napi::RangeError::New(env, "attnValues: p must be heads × len values, 0 < hd <= kvw, and values hold len rows of kvw")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // An optional eighth argument: sums over earlier positions (heads × hd) to continue from.
  const bool carry = info.Length() > 7 && !info[7].IsUndefined();
  if (carry && (!info[7].IsTypedArray() || info[7].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
                (int64_t)info[7].As<Napi::Float32Array>().ElementLength() != heads * hd)) {
    Napi::TypeError::New(env, "attnValues: the sums to continue from must be a Float32Array of heads × hd")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(heads * hd));
  if (carry) std::memcpy(out.Data(), info[7].As<Napi::Float32Array>().Data(), (size_t)(heads * hd) * sizeof(float));
  k->attn_values(p.Data(), heads, len, values.Data(), kvw, hd, len, out.Data(), carry);
  return out;
}

// topKRows(logits, rows, vocab, k, ids, values): each row's k best logits as engine-core's
// topKRows ranks them (top_k.h), into ids and values (Int32Array, Float32Array of rows × k); k = 1
// is the greedy argmax. Synchronous: a 128k-entry row takes tens of microseconds.
Napi::Value TopKRows(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  auto is = [&](size_t i, napi_typedarray_type t) {
    return info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == t;
  };
  if (info.Length() < 6 || !is(0, napi_float32_array) || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !is(4, napi_int32_array) || !is(5, napi_float32_array)) {
    Napi::TypeError::New(env, "topKRows expects (Float32Array logits, rows, vocab, k, Int32Array ids, Float32Array values)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Napi::Float32Array logits = info[0].As<Napi::Float32Array>();
  Napi::Int32Array ids = info[4].As<Napi::Int32Array>();
  Napi::Float32Array values = info[5].As<Napi::Float32Array>();
  const double rows = info[1].As<Napi::Number>().DoubleValue(), vocab = info[2].As<Napi::Number>().DoubleValue(),
               k = info[3].As<Napi::Number>().DoubleValue();
  const auto whole = [](double v, double lo) { return std::isfinite(v) && v == std::floor(v) && v >= lo && v <= 2147483647.0; };
  if (!whole(rows, 0) || !whole(vocab, 1) || !whole(k, 1) || k > vocab || (double)logits.ElementLength() < rows * vocab ||
      (double)ids.ElementLength() < rows * k || (double)values.ElementLength() < rows * k) {
    Napi::RangeError::New(env, "topKRows: needs whole rows ≥ 0, 1 ≤ k ≤ vocab, logits of rows × vocab and ids and values of rows × k")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bitnet::top_k_rows(logits.Data(), (int64_t)rows, (int64_t)vocab, (int64_t)k, ids.Data(), values.Data());
  return env.Undefined();
}

// softmaxRows(kernelPath, scores, rows, len, scale[, lengths]): the model's attention softmax
// (softmax.h) over `rows` rows of `len` scores (a Float32Array of rows × len; with lengths, row r
// holds lengths[r] of them), with the path's exp; returns the probabilities (before the f16
// rounding the model applies next; a short row's slots past its length unchanged).
Napi::Value SoftmaxRows(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsNumber()) {
    Napi::TypeError::New(env, "softmaxRows expects (kernelPath, Float32Array, rows, len, scale)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const Napi::Float32Array scores = info[1].As<Napi::Float32Array>();
  const int64_t rows = info[2].As<Napi::Number>().Int64Value(), len = info[3].As<Napi::Number>().Int64Value();
  const float scale = info[4].As<Napi::Number>().FloatValue();
  if (rows <= 0 || len <= 0 || rows > (int64_t)1 << 20 || len > (int64_t)1 << 24 ||
      (int64_t)scores.ElementLength() != rows * len) {
    Napi::RangeError::New(env, "softmaxRows: scores must hold rows × len values, rows and len positive")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // An optional sixth argument: each row's own length (≤ len; the row keeps `len` slots), as the
  // model's attention tiles give the rows of a prompt's tokens.
  std::vector<int64_t> lengths;
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        (int64_t)info[5].As<Napi::Int32Array>().ElementLength() != rows) {
      Napi::TypeError::New(env, "softmaxRows: row lengths must be an Int32Array of one length a row")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const Napi::Int32Array given = info[5].As<Napi::Int32Array>();
    for (int64_t r = 0; r < rows; r++) {
      if (given[(size_t)r] < 1 || given[(size_t)r] > len) {
        Napi::RangeError::New(env, "softmaxRows: each row length must be between 1 and len").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      lengths.push_back(given[(size_t)r]);
    }
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(rows * len));
  std::memcpy(out.Data(), scores.Data(), (size_t)(rows * len) * sizeof(float));
  if (lengths.empty()) {
    bitnet::softmax_rows(*k, out.Data(), rows, len, len, scale);
  } else {
    bitnet::softmax_ragged_rows(*k, out.Data(), rows, len, scale, [&](int64_t r) { return lengths[(size_t)r]; });
  }
  return out;
}

// ternaryGemm(kernelPath, format, weights, rows, cols, x): one path's ternary projection as the
// model runs it: the T rows of x (a Float32Array of T × cols) quantized by the path's quantizer
// (per-token int8 for "i2_s", Q8_K for "tq2_0") and laid out for its kernels, then its I2_S or
// TQ2_0 kernel over all `rows` rows at once, so every multi-token variant (16, 8, 4 tokens per
// pass, then single tokens) is reached by choosing T. Returns T × rows outputs.
Napi::Value TernaryGemm(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsString() || !info[1].IsString() || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[3].IsNumber() || !info[4].IsNumber() ||
      !info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Napi::TypeError::New(env, "ternaryGemm expects (kernelPath, \"i2_s\" | \"tq2_0\", Uint8Array, rows, cols, Float32Array)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>(), format = info[1].As<Napi::String>();
  const bitnet::Kernels* k = kernels_for_test(env, path);
  if (k == nullptr) return env.Undefined();
  const bool i2s = format == "i2_s";
  const Napi::Uint8Array w = info[2].As<Napi::Uint8Array>();
  const int64_t rows = info[3].As<Napi::Number>().Int64Value(), cols = info[4].As<Napi::Number>().Int64Value();
  const Napi::Float32Array x = info[5].As<Napi::Float32Array>();
  const int64_t block = i2s ? 128 : 256;
  const int64_t weight_bytes = rows * (i2s ? cols / 4 : cols / 256 * (int64_t)sizeof(bitnet::BlockTQ2)) + (i2s ? 32 : 0);
  if ((!i2s && format != "tq2_0") || rows <= 0 || cols <= 0 || cols % block != 0 || rows > (int64_t)1 << 24 ||
      cols > (int64_t)1 << 24 || (int64_t)w.ElementLength() != weight_bytes || x.ElementLength() == 0 ||
      (int64_t)x.ElementLength() % cols != 0) {
    Napi::RangeError::New(env, "ternaryGemm: format \"i2_s\" (cols a multiple of 128, rows × cols / 4 bytes + 32) or "
                               "\"tq2_0\" (cols a multiple of 256, rows × cols / 256 blocks), and x whole rows of cols")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Optional: run on a copy of the weights that starts this many bytes past a 64-byte boundary
  // (a mapped GGUF file aligns tensors to 32 bytes only), instead of on the array in place.
  int64_t weight_offset = -1;
  if (info.Length() > 6 && !info[6].IsUndefined()) {
    if (!info[6].IsNumber() || info[6].As<Napi::Number>().DoubleValue() < 0 || info[6].As<Napi::Number>().DoubleValue() > 63 ||
        info[6].As<Napi::Number>().DoubleValue() != (double)info[6].As<Napi::Number>().Int64Value()) {
      Napi::RangeError::New(env, "ternaryGemm: weightOffset is an integer from 0 to 63").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    weight_offset = info[6].As<Napi::Number>().Int64Value();
  }
  bitnet::AlignedVector<uint8_t> shifted;
  const uint8_t* weights = w.Data();
  if (weight_offset >= 0) {
    shifted.resize((size_t)(weight_bytes + 64));
    std::memcpy(shifted.data() + weight_offset, w.Data(), (size_t)weight_bytes);
    weights = shifted.data() + weight_offset;
  }
  const int64_t T = (int64_t)x.ElementLength() / cols;
  const int64_t groups = i2s ? 1 : cols / 256;
  bitnet::AlignedVector<int8_t> natural((size_t)cols), q((size_t)(T * cols));
  std::vector<float> scales((size_t)(T * groups));
  std::vector<int32_t> sums((size_t)(T * groups));
  for (int64_t t = 0; t < T; t++) {
    const float* xt = x.Data() + t * cols;
    if (i2s) {
      k->quantize_i8(xt, cols, natural.data(), &scales[(size_t)t], &sums[(size_t)t]);
    } else {
      k->quantize_q8k(xt, cols, natural.data(), &scales[(size_t)(t * groups)], &sums[(size_t)(t * groups)]);
    }
    bitnet::permute_activations(natural.data(), q.data() + t * cols, cols, k->layout);
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(T * rows));
  if (i2s) {
    float w_scale;
    std::memcpy(&w_scale, weights + rows * cols / 4, 4);
    k->i2s_gemm(weights, cols, 0, rows, q.data(), scales.data(), sums.data(), w_scale, T, out.Data(), rows);
  } else {
    k->tq2_gemm((const bitnet::BlockTQ2*)weights, cols, 0, rows, q.data(), scales.data(), sums.data(), T, out.Data(), rows);
  }
  return out;
}

// rowStealCoverage(rows, threads, align, minRows, slowThread, delayMs): runs work_steal.h's
// claims on a thread pool as a matrix op does, thread slowThread sleeping delayMs after each of
// its claims; returns, per row, the thread that ran it (-1: none, -2: more than one).
Napi::Value RowStealCoverage(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  for (size_t i = 0; i < 6; i++) {
    if (info.Length() <= i || !info[i].IsNumber()) {
      Napi::TypeError::New(env, "rowStealCoverage expects (rows, threads, align, minRows, slowThread, delayMs)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  const int64_t rows = info[0].As<Napi::Number>().Int64Value(), align = info[2].As<Napi::Number>().Int64Value(),
                min_rows = info[3].As<Napi::Number>().Int64Value();
  const int threads = info[1].As<Napi::Number>().Int32Value(), slow = info[4].As<Napi::Number>().Int32Value();
  const double delay_ms = info[5].As<Napi::Number>().DoubleValue();
  if (rows < 1 || rows > (int64_t)1 << 24 || threads < 1 || threads > 64 || align < 1 || min_rows < 0 || delay_ms < 0 ||
      delay_ms > 1000) {
    Napi::RangeError::New(env, "rowStealCoverage: rows 1..2^24, threads 1..64, align ≥ 1, minRows ≥ 0, delayMs 0..1000")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<std::atomic<int32_t>> owner((size_t)rows);
  for (auto& o : owner) o.store(-1, std::memory_order_relaxed);
  std::unique_ptr<bitnet::RowSteal[]> steal(new bitnet::RowSteal[(size_t)threads]);
  bitnet::row_steal_reset(steal.get(), threads, rows, align, min_rows);
  bitnet::ThreadPool pool(threads);
  pool.run([&](int tid) {
    bitnet::row_steal_run(steal.get(), tid, threads, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        int32_t none = -1;
        if (!owner[(size_t)r].compare_exchange_strong(none, tid)) owner[(size_t)r].store(-2);
      }
      if (tid == slow) std::this_thread::sleep_for(std::chrono::microseconds((int64_t)(delay_ms * 1000)));
    });
  });
  Napi::Int32Array out = Napi::Int32Array::New(env, (size_t)rows);
  for (int64_t r = 0; r < rows; r++) out[(size_t)r] = owner[(size_t)r].load();
  return out;
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->model_class = Napi::Persistent(NativeModel::Init(env));
  env.SetInstanceData(data);  // deleted with the environment
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("availablePaths", Napi::Function::New(env, AvailablePaths));
  exports.Set("decodePrefetch", Napi::Function::New(env, DecodePrefetch));
  exports.Set("measureBandwidth", Napi::Function::New(env, MeasureBandwidth));
  exports.Set("quantizeActivations", Napi::Function::New(env, QuantizeActivations));
  exports.Set("quantizeQ6K", Napi::Function::New(env, QuantizeQ6K));
  exports.Set("q6kGemm", Napi::Function::New(env, Q6KGemm));
  exports.Set("ternaryGemm", Napi::Function::New(env, TernaryGemm));
  exports.Set("f16Gemm", Napi::Function::New(env, F16Gemm));
  exports.Set("attnScores", Napi::Function::New(env, AttnScores));
  exports.Set("softmaxRows", Napi::Function::New(env, SoftmaxRows));
  exports.Set("topKRows", Napi::Function::New(env, TopKRows));
  exports.Set("attnValues", Napi::Function::New(env, AttnValues));
  exports.Set("rowStealCoverage", Napi::Function::New(env, RowStealCoverage));
  exports.Set("abiVersion", Napi::Number::New(env, 16));  // bump with every change to src/binding.ts
  return exports;
}

}  // namespace

NODE_API_MODULE(bitnet_kernels_cpu, InitAll)
