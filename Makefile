# Thin wrapper over meson/ninja. `make` builds build/skiff; `make run` installs
# dependencies, builds and starts the server; `make test` runs every test.
BUILD ?= build
MESON_FLAGS ?=
WERROR ?= 0
ifeq ($(WERROR),1)
MESON_FLAGS += --werror
endif

.PHONY: all build deps run test unit integration clean format check-format asan fuzz

all: build

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@tools/install-deps

run: deps build
	$(BUILD)/skiff server $(ARGS)

test: deps
	tools/run-tests

clean:
	rm -rf $(BUILD) build-asan build-fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')
