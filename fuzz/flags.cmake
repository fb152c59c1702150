# Included by the top-level CMakeLists.txt when DL_FUZZ=ON, before any library is defined, so the
# whole framework is built with libFuzzer's coverage instrumentation, ASan and UBSan (UBSan
# findings abort, so the fuzzer records them as crashes). scripts/fuzz.sh configures this.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "DL_FUZZ=ON needs clang++ (libFuzzer): configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang, or run scripts/fuzz.sh")
endif()
if(DL_SANITIZE)
  message(FATAL_ERROR "DL_FUZZ=ON already builds with ASan + UBSan; leave DL_SANITIZE off")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g)
add_link_options(-fsanitize=address,undefined)
