# Top-level driver for the CMake build. The README's two commands are
# `make demo` and `make test`; both work on a fresh Debian machine.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
BENCH_BUILD ?= build-release
ARM64_BUILD ?= build-arm64
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20
KVM_VM_KERNELS ?= 6.1 6.12 6.12-shadow
PREFIX ?= /usr/local
DESTDIR ?=
, := ,


.PHONY: fuzz-build
.PHONY: all deps build test test-normal test-store test-asan test-tsan test-kvm-vm test-arm64 fuzz-smoke fuzz demo bench install fixtures format clean

all: build

deps:
	@scripts/install-deps.sh

define configure
	@if [ ! -f $(1)/CMakeCache.txt ]; then cmake -S . -B $(1) $(2) >/dev/null; fi
endef

build: deps
	$(call configure,$(BUILD),)
	cmake --build $(BUILD) -j$(JOBS)

test: deps test-normal test-store test-asan test-tsan fuzz-smoke test-kvm-vm test-arm64
	@echo "make test: all suites passed"

test-normal: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The snapshot store's tests against a throwaway Ceph RGW, started and stopped (trap) around them.
test-store: build
	@scripts/test-store.sh $(BUILD)

test-asan: deps
	$(call configure,$(ASAN_BUILD),-DSQUIB_SANITIZE=address$(,)undefined -DSQUIB_BENCH=OFF)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)

test-tsan: deps
	$(call configure,$(TSAN_BUILD),-DSQUIB_SANITIZE=thread -DSQUIB_BENCH=OFF)
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -L concurrency --no-tests=ignore -j$(JOBS)

# The KVM tests (ctest label kvm) of the normal build inside a QEMU TCG VM with a real KVM,
# under each of Debian 12's cloud kernels, on every machine: test-normal runs them on the
# host's own /dev/kvm when there is one (scripts/kvm-vm.sh, docs/DESIGN.md).
test-kvm-vm: build
	@scripts/test-kvm-vm.sh $(BUILD) $(KVM_VM_KERNELS)

# The portable core (no src/kvm) cross-built for arm64 and its tests run under qemu-user
# (scripts/test-arm64.sh, docs/DESIGN.md §15).
test-arm64: deps
	@JOBS=$(JOBS) scripts/test-arm64.sh $(ARM64_BUILD)

$(FUZZ_BUILD)/.configured:
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DSQUIB_FUZZ=ON >/dev/null
	touch $@

fuzz-build: deps $(FUZZ_BUILD)/.configured
	cmake --build $(FUZZ_BUILD) -j$(JOBS)

# Every fuzz target for FUZZ_SMOKE_SECONDS over its committed corpus (ASan+UBSan).
fuzz-smoke: fuzz-build
	@scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build
	@scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

demo: build
	@KEEP=$(KEEP) scripts/demo.sh $(BUILD)

bench: deps
	$(call configure,$(BENCH_BUILD),-DCMAKE_BUILD_TYPE=Release -DSQUIB_TESTS=OFF)
	cmake --build $(BENCH_BUILD) -j$(JOBS)
	@scripts/run-bench.sh $(BENCH_BUILD)

install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

fixtures: build
	@scripts/gen-fixtures.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(BENCH_BUILD) $(ARM64_BUILD)
