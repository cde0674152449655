#pragma once
// The library's version, as in the top CMakeLists.txt's project(VERSION); tests/core/version.cpp checks that the
// two agree. RLHF_VERSION is one number for #if: major·10000 + minor·100 + patch (0.1.0 is 100).
#define RLHF_VERSION_MAJOR 0
#define RLHF_VERSION_MINOR 1
#define RLHF_VERSION_PATCH 0
#define RLHF_VERSION (RLHF_VERSION_MAJOR * 10000 + RLHF_VERSION_MINOR * 100 + RLHF_VERSION_PATCH)
#define RLHF_VERSION_STRING "0.1.0"
