# Developer conveniences around CMake (the quick start uses scripts/*.sh, which need nothing installed).
.PHONY: all build test asan fuzz bench demo clean
all: build
build:
	scripts/build.sh build
test:
	scripts/test.sh
asan:
	scripts/build.sh build-asan -DCUSTOS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	ctest --test-dir build-asan --output-on-failure -L 'unit|integration'
fuzz:
	CC=clang scripts/build.sh build-fuzz -DCUSTOS_FUZZ=ON -DCUSTOS_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug
bench:
	bench/run.sh
demo:
	scripts/demo.sh
clean:
	rm -rf build build-asan build-fuzz build-bench*
