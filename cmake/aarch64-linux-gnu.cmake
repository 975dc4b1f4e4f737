# Cross-building the core for arm64 with Debian's gcc-aarch64-linux-gnu and the arm64 -dev
# packages of multiarch (libjansson-dev:arm64, libcmocka-dev:arm64; scripts/install-deps.sh
# --arm64). ctest runs the test programs under qemu-user (scripts/test-arm64.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

# Only arm64 packages: pkg-config looks in the multiarch directory, nowhere else.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# The arm64 loader and libraries come from multiarch (/lib/ld-linux-aarch64.so.1,
# /usr/lib/aarch64-linux-gnu), so qemu needs no -L.
find_program(SQUIB_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(SQUIB_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SQUIB_QEMU_AARCH64})
endif()
