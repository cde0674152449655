# Thrust on the host for rlhf::thrust: shared by the build (CMakeLists.txt) and the installed package
# (rlhfConfig.cmake), so that the consumer's machine finds its own Thrust headers and OpenMP.

# rlhf_find_thrust(<var>): the folder holding thrust/version.h — the CUDA toolkit's CCCL copy when the toolkit
# is installed (it works with g++ too), else the distribution's (Debian libthrust-dev).
function(rlhf_find_thrust var)
  find_package(CUDAToolkit QUIET)
  set(hints "")
  foreach(dir ${CUDAToolkit_INCLUDE_DIRS})
    list(APPEND hints ${dir}/cccl ${dir})
  endforeach()
  find_path(${var} thrust/version.h HINTS ${hints} DOC "Thrust headers for rlhf::thrust")
  set(${var} ${${var}} PARENT_SCOPE)
endfunction()

# rlhf_attach_thrust(<target> <include dir> [BUILD_INTERFACE]): the headers (for C++ files; nvcc brings its own)
# and the device system: OpenMP when it is found, else the calling thread.
function(rlhf_attach_thrust target dir)
  find_package(OpenMP QUIET)
  if(TARGET OpenMP::OpenMP_CXX)
    set(system THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP)
  else()
    set(system THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP)
  endif()
  set(include $<$<COMPILE_LANGUAGE:CXX>:${dir}>)
  set(define $<$<COMPILE_LANGUAGE:CXX>:${system}>)
  set(openmp OpenMP::OpenMP_CXX)
  if(ARGN STREQUAL "BUILD_INTERFACE")
    set(include $<BUILD_INTERFACE:${include}>)
    set(define $<BUILD_INTERFACE:${define}>)
    set(openmp $<BUILD_INTERFACE:${openmp}>)
  endif()
  target_include_directories(${target} SYSTEM INTERFACE ${include})
  target_compile_definitions(${target} INTERFACE ${define})
  if(TARGET OpenMP::OpenMP_CXX)
    target_link_libraries(${target} INTERFACE ${openmp})
  endif()
endfunction()
