# Cross-compiling thecal for arm64 (Raspberry Pi 3/4/5 running Debian 12 arm64) on a Debian 12
# amd64 host, with Debian's multiarch cross toolchain:
#
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install crossbuild-essential-arm64 libsystemd-dev:arm64 libgpiod-dev:arm64 \
#     libboost-dev:arm64 libboost-program-options-dev:arm64 libhowardhinnant-date-dev:arm64 \
#     libgtest-dev:arm64 libgmock-dev:arm64 libyaml-cpp0.7:arm64 libgcrypt20:arm64 qemu-user-static binfmt-support
#   cmake -S . -B build/arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#     -DCMAKE_PREFIX_PATH=<prefix holding libyaml-cpp-dev:arm64>   # see below
#
# libyaml-cpp-dev is not Multi-Arch: same in Debian 12 (libyaml-cpp-dev:arm64 would remove the
# amd64 one), so tests/packaging/arm64-cross.sh unpacks libyaml-cpp-dev:arm64 and
# libyaml-cpp0.7:arm64 with dpkg -x into a side prefix and passes it as CMAKE_PREFIX_PATH;
# likewise libgcrypt20-dev and libgpg-error-dev, found through THECAL_ARM64_PKG_CONFIG_PATH.
# Every other -dev package above installs side by side with its amd64 twin.
#
# Test binaries run under qemu-user (CMAKE_CROSSCOMPILING_EMULATOR): gtest discovery at build
# time and ctest both use it; the arm64 loader and libraries come from the multiarch packages.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
find_program(CMAKE_STRIP aarch64-linux-gnu-strip)
find_program(CMAKE_OBJDUMP aarch64-linux-gnu-objdump)

# Libraries, headers and CMake packages of the :arm64 packages only (multiarch: the same /usr,
# the arm64 triplet directories).  CMake searches lib/<CMAKE_LIBRARY_ARCHITECTURE> first.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
    /usr/lib/x86_64-linux-gnu/cmake /usr/lib/x86_64-linux-gnu/cmake/yaml-cpp)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
# Side prefixes of -dev packages that are not Multi-Arch: same (libgcrypt20-dev,
# libgpg-error-dev): tests/packaging/arm64-cross.sh unpacks them and names their pkgconfig dir.
if(DEFINED ENV{THECAL_ARM64_PKG_CONFIG_PATH})
  set(ENV{PKG_CONFIG_PATH} "$ENV{THECAL_ARM64_PKG_CONFIG_PATH}")
else()
  set(ENV{PKG_CONFIG_PATH} "")
endif()

find_program(CMAKE_CROSSCOMPILING_EMULATOR NAMES qemu-aarch64-static qemu-aarch64)

# The .deb: CPack would otherwise ask dpkg for the build machine's architecture.
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64 CACHE STRING "Debian architecture of the package")
