# What both adapler TensorRT plugin builds share (include()d by plugins/{token,contribution}_drop/trt/CMakeLists.txt):
# finding TensorRT under TRT_ROOT, the CUDA architectures, compiler settings, the size-tensor option and
# adapler_trt_plugin(target dynamic), one shared library from ADAPLER_SOURCES with ADAPLER_INCLUDES.
# this file's folder (plugin_common.h); CMAKE_CURRENT_LIST_DIR inside the function would be the caller's
set(ADAPLER_TRT_COMMON_DIR "${CMAKE_CURRENT_LIST_DIR}")

set(TRT_ROOT "$ENV{TRT_ROOT}" CACHE PATH "TensorRT SDK root (contains include/NvInfer.h and lib/libnvinfer.so)")
if(NOT TRT_ROOT)
  message(FATAL_ERROR
    "TRT_ROOT is not set. Point it at a TensorRT SDK (the tar/zip from NVIDIA, containing include/NvInfer.h "
    "and lib/libnvinfer.so), e.g. TRT_ROOT=/opt/TensorRT-11.1 cmake -S plugins/token_drop/trt -B build/token_drop_trt. "
    "TensorRT headers are not available from PyPI or Debian (the PyPI 'tensorrt' packages are download stubs).")
endif()

# include/<arch>-linux-gnu and lib/<arch>-linux-gnu: the Debian packages of JetPack (TRT_ROOT=/usr on Jetson)
find_path(TRT_INCLUDE_DIR NvInfer.h
  HINTS "${TRT_ROOT}/include" "${TRT_ROOT}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux/include"
        "${TRT_ROOT}/include/${CMAKE_SYSTEM_PROCESSOR}-linux-gnu"
  NO_DEFAULT_PATH)
if(NOT TRT_INCLUDE_DIR)
  message(FATAL_ERROR "NvInfer.h not found under TRT_ROOT='${TRT_ROOT}' (looked in include/, include/<arch>-linux-gnu/ and targets/*/include/).")
endif()

find_library(TRT_NVINFER_LIB NAMES nvinfer nvinfer_11 nvinfer_10
  HINTS "${TRT_ROOT}/lib" "${TRT_ROOT}/lib64" "${TRT_ROOT}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux/lib"
        "${TRT_ROOT}/lib/${CMAKE_SYSTEM_PROCESSOR}-linux-gnu"
  NO_DEFAULT_PATH)
if(NOT TRT_NVINFER_LIB)
  message(FATAL_ERROR "libnvinfer not found under TRT_ROOT='${TRT_ROOT}' (looked in lib/, lib64/, targets/*/lib/).")
endif()

set(ADAPLER_TD_CUDA_DIR "${ADAPLER_TRT_COMMON_DIR}/../cuda")
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # the one architecture list of every adapler kernel, shared with the kernel libraries' builds (cuda_library.py)
  file(STRINGS "${ADAPLER_TD_CUDA_DIR}/architectures.txt" CMAKE_CUDA_ARCHITECTURES REGEX "^[0-9]+[a-z]?$")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_STANDARD 17)

# Size-tensor type: OFF = INT32, the type the TensorRT 10.3 and 11.1 headers require for size tensors
# (IPluginV3OneBuild::getOutputDataTypes, see plugin_common.h); ON = INT64.
option(ADAPLER_SIZE_TENSOR_INT64 "declare the size tensor L as INT64 instead of INT32" OFF)

function(adapler_trt_plugin target dynamic)
  add_library(${target} SHARED ${ADAPLER_SOURCES})
  target_include_directories(${target} PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}" "${ADAPLER_TRT_COMMON_DIR}" ${ADAPLER_INCLUDES})
  # SYSTEM: the TensorRT headers' own deprecation warnings are not this plugin's diagnostics
  target_include_directories(${target} SYSTEM PRIVATE "${TRT_INCLUDE_DIR}")
  target_link_libraries(${target} PRIVATE "${TRT_NVINFER_LIB}" CUDA::cudart)
  target_compile_definitions(${target} PRIVATE ADAPLER_TRT_DYNAMIC_REGISTRATION=${dynamic})
  if(ADAPLER_SIZE_TENSOR_INT64)
    target_compile_definitions(${target} PRIVATE ADAPLER_SIZE_TENSOR_INT64=1)
  else()
    target_compile_definitions(${target} PRIVATE ADAPLER_SIZE_TENSOR_INT64=0)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
  set_target_properties(${target} PROPERTIES CXX_VISIBILITY_PRESET hidden CUDA_VISIBILITY_PRESET hidden)
endfunction()
