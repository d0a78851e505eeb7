// Link-time stand-in for libnvinfer (tests/test_trt_plugin_build.py): it defines the one libnvinfer
// symbol the TokenDrop plugin references, so `-Wl,--no-undefined` proves nothing else is missing.
// It is never used at run time: plugin_harness exports its own getPluginRegistry(), which wins.
#include "NvInferRuntime.h"

extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return nullptr;
}
