{
  "targets": [
    {
      "target_name": "bitnet_kernels_cpu",
      "sources": [
        "native/addon.cc",
        "native/model_load.cc",
        "native/model_step.cc",
        "native/kernels_scalar.cc",
        "native/kernels_avx2.cc",
        "native/kernels_avxvnni.cc",
        "native/kernels_avx512.cc",
        "native/kernels_amx.cc",
        "native/kernels_neon.cc",
        "native/kernels_dispatch.cc",
        "native/bandwidth.cc",
        "native/glibc_compat.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wno-unused-function", "-Wno-maybe-uninitialized"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++14"],
      "conditions": [["OS=='linux'", {"ldflags": ["-static-libstdc++"]}]],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-ffp-contract=off", "-fvisibility=hidden"]
      }
    }
  ]
}
